// The flags `simulate` and `inspect` share: pipeline workers, lists, byte sizes, a schedule from a
// CSV file, the wire and the costs of actions, and the files a simulated step is written to.
import { readFileSync, writeFileSync } from 'node:fs';
import { BackflowError } from '../errors.ts';
import { placedScheduleFromCsv } from '../schedule/csv.ts';
import { type PlacedSchedule, resolveStagePlacement, scheduleShape } from '../schedule/placement.ts';
import { type LinkCost, linkParams } from '../sim/cost.ts';
import { TRANSPORT_KINDS, type TransportKind, type TransportParams } from '../sim/transport.ts';
import { toChromeTrace } from '../trace/chrome.ts';
import { timelineSvg } from '../trace/svg.ts';
import type { Trace } from '../trace/trace.ts';
import { parseBytes } from '../util/bytes.ts';
import { choice, int, num, UsageError, type Values } from './main.ts';

/**
 * p, from --workers or its deprecated alias --stages (which named the pipeline workers, not the
 * stages: with chunks there are more stages than workers). Warns on stderr when --stages is used.
 */
export function pipelineWorkers(v: Values, fallback: number): number {
  const workers = v['workers'] === undefined ? undefined : int(v, 'workers');
  const stages = v['stages'] === undefined ? undefined : int(v, 'stages');
  if (workers !== undefined && stages !== undefined && workers !== stages)
    throw new UsageError(`--workers and --stages are the same flag: found ${workers} and ${stages}`);
  if (stages !== undefined && workers === undefined)
    console.error('note: --stages is deprecated; it means the pipeline workers, use --workers');
  return workers ?? stages ?? fallback;
}

/** An integer flag with its default applied here (the spec leaves it unset, to tell given from not). */
export function intOr(v: Values, key: string, fallback: number): number {
  return v[key] === undefined ? fallback : int(v, key);
}

/** A comma-separated list of integers >= 1: `4,8,16`. */
export function intList(v: Values, key: string, fallback: readonly number[]): number[] {
  const raw = v[key];
  if (raw === undefined) return [...fallback];
  const items = String(raw).split(',');
  const values = items.map((s) => Number(s.trim()));
  if (values.some((n, i) => items[i]!.trim() === '' || !Number.isSafeInteger(n) || n < 1))
    throw new UsageError(`--${key}: expected integers >= 1 separated by commas, found '${String(raw)}'`);
  return values;
}

/** A comma-separated list of choices: `1f1b,zb-h1`. */
export function choiceList<T extends string>(v: Values, key: string, choices: readonly T[]): T[] {
  const items = String(v[key]).split(',');
  return items.map((item) => choice({ [key]: item.trim() }, key, choices));
}

/** A size in bytes: an integer, optionally with a unit (B, KiB, MiB, GiB). */
export function byteSize(v: Values, key: string): number {
  const raw = v[key];
  const n = typeof raw === 'string' ? parseBytes(raw) : null;
  if (n === null)
    throw new UsageError(
      `--${key}: expected a whole number of bytes >= 1, optionally with B, KiB, MiB or GiB, found '${String(raw)}'`,
    );
  return n;
}

/** A schedule read from --csv, with its sizes: workers are its rows; stages and microbatches its actions. */
export interface CsvSchedule {
  readonly file: string;
  /** The schedule with its stage placement resolved to the worker of every stage. */
  readonly placed: PlacedSchedule;
  readonly workers: number;
  readonly microbatches: number;
}

/**
 * Reads the schedule in `v.csv`: its rows are the workers (a different --workers is refused), its
 * stages and microbatches are what its actions name (unless --microbatches says more). A named
 * placement line is resolved here, so the stage count needs no --chunks.
 */
export function csvSchedule(v: Values): CsvSchedule {
  const file = String(v['csv']);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--csv: cannot read '${file}': ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const { schedule, stagePlacement } = placedScheduleFromCsv(text);
    const workers = schedule.length;
    const given = v['workers'] ?? v['stages'];
    if (given !== undefined && pipelineWorkers(v, workers) !== workers)
      throw new UsageError(`--csv: ${file} has ${workers} rows (one per worker), but --workers is ${given}`);
    const shape = scheduleShape(schedule, typeof stagePlacement === 'object' ? { stagePlacement } : {});
    const microbatches = intOr(v, 'microbatches', shape.microbatches);
    const stageWorkers = resolveStagePlacement(stagePlacement, Math.max(1, shape.stages), workers);
    return { file, placed: { schedule, stagePlacement: stageWorkers }, workers, microbatches };
  } catch (err) {
    if (err instanceof BackflowError && !(err instanceof UsageError))
      throw new UsageError(`--csv ${file}: ${err.message}`);
    throw err;
  }
}

/** The wire between workers from --transport, --latency and --bandwidth. */
export function linkFlags(v: Values): LinkCost & { transport: TransportKind } {
  return {
    transport: choice(v, 'transport', TRANSPORT_KINDS),
    ...(v['latency'] !== undefined ? { latencyMs: num(v, 'latency') } : {}),
    ...(v['bandwidth'] !== undefined ? { bytesPerMs: num(v, 'bandwidth', true) * 1e3 } : {}),
  };
}

/** --forward and --backward, and --input and --weight when given (they default in the cost model). */
export function computeFlags(v: Values): {
  forward: number;
  backward: number;
  input?: number;
  weight?: number;
} {
  return {
    forward: num(v, 'forward', true),
    backward: num(v, 'backward', true),
    ...(v['input'] !== undefined ? { input: num(v, 'input') } : {}),
    ...(v['weight'] !== undefined ? { weight: num(v, 'weight') } : {}),
  };
}

export function describeTransport(link: LinkCost): string {
  const { kind, params: p } = linkParams(link);
  return transportLine(kind, p);
}

function transportLine(kind: TransportKind, p: TransportParams): string {
  const bandwidth = Number.isFinite(p.mbPerS) ? `${p.mbPerS} MB/s` : 'no bandwidth limit';
  if (kind === 'threads') return `threads (in-process ports): ${p.latencyMs} ms per message, ${bandwidth}`;
  if (kind === 'tcp')
    return `tcp (a direct link per pair of workers): ${p.latencyMs} ms per message, ${bandwidth} per link`;
  return `nats (every chunk through one broker): ${p.latencyMs} ms per hop (two per message), ${bandwidth} shared by every link, ${p.perChunkMs * 1e3} µs per chunk of up to ${p.chunkBytes} bytes`;
}

/** --svg and --trace: the timeline and the Chrome trace of a simulated step. */
export function writeOutputs(v: Values, trace: Trace, title: string): void {
  if (typeof v['svg'] === 'string') {
    writeFileSync(v['svg'], timelineSvg(trace, { title }));
    console.log(`timeline written to ${v['svg']}`);
  }
  if (typeof v['trace'] === 'string') {
    writeFileSync(v['trace'], JSON.stringify(toChromeTrace(trace)));
    console.log(`Chrome trace written to ${v['trace']}`);
  }
}
