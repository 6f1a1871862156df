// Which schedule, how many microbatches and how many chunks, for a model on p workers under a memory
// limit: every candidate simulated with the runtime's own host logic, ranked by step time.
import { InputError, ScheduleError } from '../errors.ts';
import { SCHEDULE_KINDS, type ScheduleKind } from '../schedule/config.ts';
import { placedScheduleToCsv } from '../schedule/csv.ts';
import { generatePlacedSchedule } from '../schedule/generators.ts';
import type { Trace } from '../trace/trace.ts';
import { formatBytes } from '../util/bytes.ts';
import type { LinkCost } from './cost.ts';
import { simulatePipeline } from './pipeline.ts';

// Note [search costs]
// Candidates cut the same work differently: p workers x v chunks make S = p v stages, and the step's
// batch is cut into m microbatches. So the search takes the costs of the whole model on the whole
// batch and shares them out evenly: the forward of one stage for one microbatch takes
// forward / (S m) ms, plus overheadMs, the fixed cost of any task (dispatch, message handling: what
// makes tiny microbatches slow); the backward (or its input and weight parts) likewise; one
// microbatch carries activationBytes / m bytes across each stage boundary, and its gradient as many
// back. Every candidate does the same work, so step times compare directly.
// Memory: a stage keeps keptBytes / (S m) bytes of each microbatch it has in flight, so a worker's
// peak kept bytes are its peak microbatches in flight, summed over its stages at each instant as its
// host counts them (SimResult.peakInFlight), times that; a microbatch counts until its last backward
// part (W, for a split backward) has run. With the step's batch fixed, more microbatches shrink the
// bubble and what each one holds, so memory runs out on the side of few, large microbatches and of
// schedules that hold many at once (GPipe, interleaved), while per-task overheads and messages grow
// with m. Equal stages are an assumption: compile's 'stages' placement balances FLOPs, not time or
// bytes.

/** The whole model on one step's batch (Note [search costs]); times in ms. */
export interface ModelCosts extends LinkCost {
  /** Forward of every stage for every microbatch of the step, together. */
  forward: number;
  /** Backward, likewise (for schedules that split it, `input` + `weight`, default half each). */
  backward: number;
  /** The input-gradient half of the backward, for schedules that split it. */
  input?: number;
  /** The weight-gradient half of the backward, for schedules that split it. */
  weight?: number;
  /** A fixed cost of every task, whatever its size (default 0). */
  overheadMs?: number;
  /** Bytes kept for the backward over the whole batch, every stage together: needed for a memory limit. */
  keptBytes?: number;
  /** Bytes of the whole batch's activation crossing one stage boundary (default 64 per microbatch). */
  activationBytes?: number;
}

/** What `searchSchedule` tries: the machine, the model's costs, and the choices to combine. */
export interface SearchOptions {
  /** Pipeline workers (p). */
  workers: number;
  /** The whole model's costs for one step's batch (`stepCosts` derives them from a trace). */
  costs: ModelCosts;
  /** Bytes a worker may keep for backwards at once (default: no limit). */
  memoryLimit?: number;
  /** The microbatch counts to try. */
  microbatches: readonly number[];
  /** The chunks per worker to try (default [1]). */
  chunks?: readonly number[];
  /** The schedules to try (default: every kind, SCHEDULE_KINDS). */
  schedules?: readonly ScheduleKind[];
  /** Cores the workers share (default: one each). */
  cores?: number;
}

/** One configuration the search tries. */
export interface Candidate {
  /** The schedule kind. */
  readonly schedule: ScheduleKind;
  /** Microbatches per step. */
  readonly microbatches: number;
  /** Stages (chunks) per worker. */
  readonly chunks: number;
}

/** A candidate that ran in the simulator, with what it costs. */
export interface RankedCandidate extends Candidate {
  /** Stages of the pipeline (workers times chunks). */
  readonly stages: number;
  /** The simulated step time, in the costs' unit (ms). */
  readonly makespan: number;
  /** The fraction of the step the workers are idle. */
  readonly idleFraction: number;
  /** How much longer than the ideal (no bubble) step it is, as a fraction. */
  readonly bubbleVsIdeal: number;
  /** Per worker, the peak microbatches in flight over all its stages (summed at each instant). */
  readonly peakInFlight: readonly number[];
  /** Per worker, the peak bytes kept for backwards; null without costs.keptBytes. */
  readonly peakKeptBytes: readonly number[] | null;
  /** Some worker keeps more than the memory limit. */
  readonly overLimit: boolean;
}

/** A candidate the search did not run, and why. */
export interface SkippedCandidate extends Candidate {
  /** The schedule's rule it breaks, as its ScheduleError says, or the candidate it repeats. */
  readonly reason: string;
}

/** What `searchSchedule` found: the candidates ranked by step time, and those skipped. */
export interface SearchResult {
  /** Workers of the pipeline. */
  readonly workers: number;
  /** Bytes a worker may keep, or null for no limit. */
  readonly memoryLimit: number | null;
  /** Every valid candidate, fastest first (ties: the one keeping fewer bytes, then the order tried). */
  readonly ranked: readonly RankedCandidate[];
  /** Candidates not run: refused by their schedule's rules, or repeats of one already tried. */
  readonly skipped: readonly SkippedCandidate[];
  /** The fastest candidate within the limit, or null when none fits. */
  readonly best: RankedCandidate | null;
  /** The best candidate's step, simulated again with its trace recorded (for a timeline). */
  readonly bestTrace: Trace | null;
}

/**
 * Simulates every combination of schedule, microbatches and chunks (Note [search costs]), skipping
 * those a schedule's rules refuse (with the reason), and ranks the rest by step time, marking those
 * over the memory limit. Throws InputError for options that make no search at all.
 */
export function searchSchedule(options: SearchOptions): SearchResult {
  const { workers, costs } = options;
  const schedules = options.schedules ?? SCHEDULE_KINDS;
  const chunks = options.chunks ?? [1];
  checkOptions(options, schedules, chunks);
  const limit = options.memoryLimit ?? null;
  const ranked: RankedCandidate[] = [];
  const skipped: SkippedCandidate[] = [];
  const seen = new Map<string, Candidate>();
  for (const schedule of schedules)
    for (const v of chunks)
      for (const m of options.microbatches) {
        const candidate = { schedule, microbatches: m, chunks: v };
        try {
          // The same actions as a candidate already tried (interleaved 1F1B with one chunk is 1F1B).
          const config = { workers, microbatches: m, chunks: v };
          const key = placedScheduleToCsv(generatePlacedSchedule(schedule, config));
          const same = seen.get(key);
          if (same !== undefined) {
            skipped.push({
              ...candidate,
              reason: `the same schedule as ${same.schedule} with chunks=${same.chunks}`,
            });
            continue;
          }
          seen.set(key, candidate);
          const r = simulateCandidate(options, candidate, false);
          const stages = workers * v;
          const perStage = costs.keptBytes === undefined ? null : costs.keptBytes / (stages * m);
          const peakKeptBytes = perStage === null ? null : r.peakInFlight.map((n) => n * perStage);
          ranked.push({
            ...candidate,
            stages,
            makespan: r.makespan,
            idleFraction: r.idleFraction,
            bubbleVsIdeal: r.bubbleVsIdeal,
            peakInFlight: r.peakInFlight,
            peakKeptBytes,
            overLimit: limit !== null && peakKeptBytes!.some((b) => b > limit),
          });
        } catch (err) {
          if (!(err instanceof ScheduleError)) throw err;
          skipped.push({ ...candidate, reason: err.message });
        }
      }
  const keptOf = (c: RankedCandidate) => Math.max(0, ...(c.peakKeptBytes ?? c.peakInFlight));
  // A stable sort: equal candidates stay in the order they were tried.
  ranked.sort((a, b) => a.makespan - b.makespan || keptOf(a) - keptOf(b));
  const best = ranked.find((c) => !c.overLimit) ?? null;
  const bestTrace = best === null ? null : simulateCandidate(options, best, true).trace;
  return { workers, memoryLimit: limit, ranked, skipped, best, bestTrace };
}

/** One candidate's step, with the whole model's costs shared out over its stages and microbatches. */
export function simulateCandidate(
  options: Pick<SearchOptions, 'workers' | 'costs' | 'cores'>,
  { schedule, microbatches: m, chunks }: Candidate,
  record = true,
) {
  const { costs } = options;
  const stages = options.workers * chunks;
  const overhead = costs.overheadMs ?? 0;
  const share = (ms: number) => ms / (stages * m) + overhead;
  const input = costs.input ?? costs.backward / 2;
  const weight = costs.weight ?? costs.backward - input;
  const { transport, latencyMs, bytesPerMs } = costs;
  return simulatePipeline({
    schedule,
    workers: options.workers,
    microbatches: m,
    chunks,
    ...(costs.activationBytes !== undefined
      ? { activationBytes: Math.max(1, Math.ceil(costs.activationBytes / m)) }
      : {}),
    costs: {
      forward: share(costs.forward),
      backward: share(costs.backward),
      input: share(input),
      weight: share(weight),
      ...(transport !== undefined ? { transport } : {}),
      ...(latencyMs !== undefined ? { latencyMs } : {}),
      ...(bytesPerMs !== undefined ? { bytesPerMs } : {}),
    },
    ...(options.cores !== undefined ? { cores: options.cores } : {}),
    record,
  });
}

function checkOptions(
  options: SearchOptions,
  schedules: readonly ScheduleKind[],
  chunks: readonly number[],
): void {
  const fail = (what: string, expected: string, found: unknown): never => {
    throw new InputError(`searchSchedule: ${what}: expected ${expected}, found ${JSON.stringify(found)}`, {
      expected,
      found,
    });
  };
  const counts = (name: string, xs: readonly number[]) => {
    if (xs.length === 0 || xs.some((x) => !Number.isSafeInteger(x) || x < 1))
      fail(name, 'a non-empty list of integers >= 1', xs);
  };
  if (!Number.isSafeInteger(options.workers) || options.workers < 1)
    fail('workers', 'an integer >= 1', options.workers);
  counts('microbatches', options.microbatches);
  counts('chunks', chunks);
  if (schedules.length === 0) fail('schedules', `some of ${SCHEDULE_KINDS.join(', ')}`, schedules);
  const unknown = schedules.filter((s) => !(SCHEDULE_KINDS as readonly string[]).includes(s));
  if (unknown.length > 0) fail('schedules', `some of ${SCHEDULE_KINDS.join(', ')}`, unknown);
  const { costs } = options;
  for (const key of [
    'forward',
    'backward',
    'input',
    'weight',
    'overheadMs',
    'keptBytes',
    'activationBytes',
  ] as const) {
    const x = costs[key];
    if (x !== undefined && !(Number.isFinite(x) && x >= 0)) fail(`costs.${key}`, 'a finite number >= 0', x);
  }
  if (options.memoryLimit !== undefined) {
    if (!(options.memoryLimit > 0)) fail('memoryLimit', 'a number of bytes > 0', options.memoryLimit);
    if (costs.keptBytes === undefined)
      fail(
        'costs.keptBytes',
        'the bytes the model keeps for its backward (a memory limit needs them)',
        undefined,
      );
  }
}

/**
 * The ranked table, the skipped candidates and their reasons, and the answer: the evidence for a
 * choice, as `backflow simulate --search` prints it. In flight and kept are the busiest worker's.
 */
export function formatSearch(result: SearchResult): string {
  const limit = result.memoryLimit;
  const header = [
    'rank',
    'schedule',
    'microbatches',
    'chunks',
    'stages',
    'step ms',
    'bubble',
    'in flight',
    'kept',
    '',
  ];
  const rows = result.ranked.map((c, i) => [
    String(i + 1),
    c.schedule,
    String(c.microbatches),
    String(c.chunks),
    String(c.stages),
    c.makespan.toFixed(3),
    `${(c.bubbleVsIdeal * 100).toFixed(1)}%`,
    String(Math.max(0, ...c.peakInFlight)),
    c.peakKeptBytes === null ? '-' : formatBytes(Math.max(0, ...c.peakKeptBytes)),
    c.overLimit ? 'over the limit' : c === result.best ? 'best' : '',
  ]);
  const left = new Set([1, 9]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (left.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(header), ...rows.map(line)];
  out.push(
    '(bubble: step time over the ideal, total work / workers; in flight and kept: the busiest worker at its peak)',
  );
  if (result.skipped.length > 0) {
    // One line per schedule, chunks and reason, with the microbatch counts it covers.
    const groups = new Map<string, { first: SkippedCandidate; microbatches: number[] }>();
    for (const s of result.skipped) {
      const key = JSON.stringify([s.schedule, s.chunks, s.reason]);
      const group = groups.get(key) ?? { first: s, microbatches: [] };
      group.microbatches.push(s.microbatches);
      groups.set(key, group);
    }
    out.push('', `skipped ${result.skipped.length}:`);
    for (const { first, microbatches } of groups.values())
      out.push(`  ${first.schedule}, chunks=${first.chunks}, m=${microbatches.join(',')}: ${first.reason}`);
  }
  const within = limit === null ? '' : ` within ${formatBytes(limit)} per worker`;
  const b = result.best;
  out.push(
    '',
    b === null
      ? `no candidate fits${within}`
      : `best${within}: ${b.schedule}, ${b.microbatches} microbatches, ${b.chunks} chunk${b.chunks > 1 ? 's' : ''} per worker: ${b.makespan.toFixed(3)} ms per step`,
  );
  return out.join('\n');
}
