// `backflow simulate` and `backflow inspect`: a pipeline schedule simulated, and a graph, a plan or a
// schedule grid printed. `simulate --search` is in search-command.ts.
import { printGraph } from '../graph/print.ts';
import { PLACEMENT_STRATEGIES } from '../partition/placement.ts';
import { compile } from '../partition/plan.ts';
import { printPlan } from '../partition/print.ts';
import type { Schedule } from '../schedule/action.ts';
import { bubbleStats } from '../schedule/bubble.ts';
import { insertCommunication, stripCommunication } from '../schedule/communication.ts';
import { checkPipelineConfig, SCHEDULE_KINDS, type ScheduleKind } from '../schedule/config.ts';
import { generatePlacedSchedule } from '../schedule/generators.ts';
import { formatGrid } from '../schedule/grid.ts';
import { formatStagePlacement, namePlacement, type StagePlacement } from '../schedule/placement.ts';
import { validateSchedule } from '../schedule/validate.ts';
import { simulatePipeline } from '../sim/pipeline.ts';
import { TRANSPORT_KINDS } from '../sim/transport.ts';
import { formatBytes } from '../util/bytes.ts';
import { choice, int, type Spec, UsageError, type Values } from './main.ts';
import { MODELS } from './models.ts';
import {
  byteSize,
  computeFlags,
  csvSchedule,
  describeTransport,
  intOr,
  linkFlags,
  pipelineWorkers,
  writeOutputs,
} from './pipeline-flags.ts';
import { SEARCH, search } from './search-command.ts';

export const SIMULATE: Spec = {
  workers: {
    type: 'string',
    help: 'pipeline workers (p), one stage each unless --chunks (default 4; with --csv, its rows)',
  },
  stages: {
    type: 'string',
    help: 'deprecated: the old name of --workers (it meant the workers, not the stages)',
  },
  microbatches: {
    type: 'string',
    help: "microbatches per step (m) (default 8; with --csv, the CSV's; with --search, a list: 4,8,16)",
  },
  schedule: { type: 'string', help: `${SCHEDULE_KINDS.join(' | ')} (default 1f1b)` },
  csv: {
    type: 'string',
    value: 'file',
    help: 'a hand-written schedule: one row per worker, one action per cell (0F0, 1B3, 0I1 ...; empty: idle), optionally a first line placement,v',
  },
  chunks: {
    type: 'string',
    help: 'model chunks per worker (interleaved) (default 1; with --search, a list: 1,2)',
  },
  forward: {
    type: 'string',
    default: '1',
    help: "forward time of one stage for one microbatch (ms); with --search, the whole model's on the step's batch",
  },
  backward: { type: 'string', default: '2', help: 'backward time, the same way (ms)' },
  input: {
    type: 'string',
    help: 'for schedules that split the backward (zb-h1): its input-gradient part I (ms; default half of --backward)',
  },
  weight: { type: 'string', help: 'and its weight-gradient part W (ms; default --backward minus I)' },
  transport: {
    type: 'string',
    default: 'threads',
    help: `the wire between workers: ${TRANSPORT_KINDS.join(' | ')} (as train's --data-path)`,
  },
  'activation-bytes': {
    type: 'string',
    help: "bytes of one microbatch crossing a stage boundary, e.g. 4096, 256KiB, 1MiB (default 64); with --search, the step's batch",
  },
  latency: { type: 'string', help: "per-message latency of one hop (ms; default: the transport's)" },
  bandwidth: { type: 'string', help: "MB/s of one link, or of the NATS broker (default: the transport's)" },
  cores: { type: 'string', help: 'cores the workers share (default: one each)' },
  svg: {
    type: 'string',
    help: "write the timeline as SVG to this file (with --search, the best candidate's)",
  },
  trace: { type: 'string', help: "write a Chrome trace (Perfetto) to this file (with --search, the best's)" },
  ...SEARCH,
};

export const INSPECT: Spec = {
  what: { type: 'string', default: 'graph', help: 'graph | plan | schedule' },
  model: { type: 'string', default: 'mnist', help: 'mnist | spirals (the MLP the train command uses)' },
  workers: {
    type: 'string',
    help: 'for plan: workers (default 2); for schedule: pipeline workers (default 4)',
  },
  stages: { type: 'string', help: 'deprecated: for schedule, the old name of --workers' },
  placement: { type: 'string', default: 'stages', help: `for plan: ${PLACEMENT_STRATEGIES.join(' | ')}` },
  schedule: { type: 'string', default: '1f1b', help: `for schedule: ${SCHEDULE_KINDS.join(' | ')}` },
  csv: {
    type: 'string',
    value: 'file',
    help: 'for schedule: a hand-written one from this CSV file, checked',
  },
  microbatches: { type: 'string', help: 'for schedule: microbatches (default 8; with --csv, its own)' },
  chunks: { type: 'string', help: 'for schedule: chunks per worker (default 1)' },
  comms: {
    type: 'boolean',
    default: false,
    help: 'for schedule: with its sends and receives (else compute only)',
  },
  forward: {
    type: 'string',
    default: '1',
    help: "for schedule: the dry run's F of one stage and microbatch (ms)",
  },
  backward: { type: 'string', default: '2', help: "for schedule: the dry run's B (ms)" },
  input: {
    type: 'string',
    help: "for schedule: the dry run's I, of a split backward (ms; default half of B)",
  },
  weight: { type: 'string', help: "for schedule: the dry run's W (ms; default B minus I)" },
};

export async function simulate(v: Values): Promise<void> {
  if (v['search'] === true) return search(v);
  for (const key of ['schedules', 'memory-limit', 'kept-bytes', 'overhead'])
    if (v[key] !== undefined) throw new UsageError(`--${key} is for --search`);
  for (const key of ['microbatches', 'chunks'])
    if (String(v[key]).includes(','))
      throw new UsageError(
        `--${key}: a list ('${String(v[key])}') is for --search; without it, give one count`,
      );
  if (v['csv'] !== undefined && v['schedule'] !== undefined)
    throw new UsageError('--csv and --schedule both name the schedule: give one');
  const csv = v['csv'] === undefined ? null : csvSchedule(v);
  const kind = csv === null ? choice({ schedule: '1f1b', ...v }, 'schedule', SCHEDULE_KINDS) : null;
  const p = csv?.workers ?? pipelineWorkers(v, 4);
  const m = csv?.microbatches ?? intOr(v, 'microbatches', 8);
  const link = linkFlags(v);
  const options = {
    schedule: csv?.placed ?? kind!,
    workers: p,
    microbatches: m,
    ...(csv === null ? { chunks: intOr(v, 'chunks', 1) } : {}),
    activationBytes: v['activation-bytes'] === undefined ? 64 : byteSize(v, 'activation-bytes'),
    ...(v['cores'] !== undefined ? { cores: int(v, 'cores') } : {}),
  };
  const compute = computeFlags(v);
  const r = simulatePipeline({ ...options, costs: { ...compute, ...link } });
  // The same step with free communication: what the wire adds to the step.
  const free = simulatePipeline({ ...options, costs: compute, record: false }).makespan;
  const name = csv === null ? kind! : csv.file;
  console.log(`${name}: p=${p} workers, m=${m} microbatches, ${r.stages} stages`);
  console.log(`  transport        ${describeTransport(link)}`);
  console.log(`  step time        ${r.makespan.toFixed(3)} ms`);
  console.log(
    `  bubble           ${(r.idleFraction * 100).toFixed(2)}% of the step idle; ${(r.bubbleVsIdeal * 100).toFixed(2)}% over the ideal time`,
  );
  const w = r.wire;
  const each = (ms: number) => (w.messages === 0 ? 0 : ms / w.messages);
  console.log(
    w.messages === 0
      ? '  on the wire      no messages'
      : `  on the wire      ${w.messages} messages of ${formatBytes(Math.round(each(w.bytes)))}: ${each(w.totalMs).toFixed(3)} ms each from send to receipt, ${each(w.queuedMs).toFixed(3)} ms of it queued`,
  );
  console.log(
    `  cost of the wire +${(r.makespan - free).toFixed(3)} ms (${(((r.makespan - free) / r.makespan) * 100).toFixed(2)}% of the step) over the same step with free communication, ${free.toFixed(3)} ms`,
  );
  if (w.busiest !== null)
    console.log(
      `  busiest          ${w.busiest.resource}, busy ${((w.busiest.busyMs / r.makespan) * 100).toFixed(2)}% of the step`,
    );
  console.log(`  peak in flight   ${perWorker(r.peakInFlight.map(String), 'microbatches')}`);
  console.log(`  peak activations ${perWorker(r.peakKeptBytes.map(formatBytes), 'kept')}`);
  writeOutputs(v, r.trace, `${name}, p=${p}, m=${m} (simulated)`);
}

/** One figure per worker; the first and last few of a long pipeline. */
export function perWorker(figures: string[], what: string): string {
  const n = figures.length;
  if (n <= 16) return `${figures.join(' ')} ${what} per worker`;
  return `${figures.slice(0, 4).join(' ')} ... ${figures.slice(-4).join(' ')} ${what} on workers 0-3 ... ${n - 4}-${n - 1}`;
}

export async function inspect(v: Values): Promise<void> {
  const what = choice(v, 'what', ['graph', 'plan', 'schedule'] as const);
  const graph = MODELS[choice(v, 'model', ['mnist', 'spirals'] as const)].graph();
  if (what === 'graph') console.log(printGraph(graph));
  else if (what === 'plan')
    console.log(
      printPlan(
        compile(graph, {
          workers: intOr(v, 'workers', 2),
          placement: choice(v, 'placement', PLACEMENT_STRATEGIES),
        }),
      ),
    );
  else inspectSchedule(v);
}

/**
 * The grid of a generated or hand-written schedule, compute only or with its sends and receives,
 * and its dry run (`bubbleStats`) under the given action costs.
 */
function inspectSchedule(v: Values): void {
  let schedule: Schedule;
  let stagePlacement: StagePlacement;
  if (v['csv'] !== undefined) {
    const csv = csvSchedule(v);
    schedule = csv.placed.schedule;
    stagePlacement = csv.placed.stagePlacement;
    validateSchedule(schedule, { stagePlacement, microbatches: csv.microbatches });
    console.log(`${csv.file}: p=${csv.workers} workers, m=${csv.microbatches} microbatches`);
  } else {
    const kind: ScheduleKind = choice(v, 'schedule', SCHEDULE_KINDS);
    const config = {
      workers: pipelineWorkers(v, 4),
      microbatches: intOr(v, 'microbatches', 8),
      chunks: intOr(v, 'chunks', 1),
    };
    checkPipelineConfig(kind, config);
    ({ schedule, stagePlacement } = generatePlacedSchedule(kind, config));
  }
  const compute = stripCommunication(schedule);
  console.log(formatGrid(v['comms'] === true ? insertCommunication(compute) : compute));
  const { forward, backward, input = backward / 2, weight = backward - input } = computeFlags(v);
  const stats = bubbleStats(compute, { costF: forward, costB: backward, costI: input, costW: weight });
  console.log(
    `dry run (F ${forward}, B ${backward}, I ${input}, W ${weight} ms per stage and microbatch, free messages, ` +
      `placement ${formatStagePlacement(named(stagePlacement, schedule.length))}): step ${stats.makespan.toFixed(3)} ms, ` +
      `${(stats.idleFraction * 100).toFixed(2)}% idle, ` +
      `${perWorker(stats.workerPeakInFlight.map(String), 'microbatches in flight at peak')}`,
  );
}

/** A placement by its name when it has one ('loop' rather than [0, 1, 2, 3]). */
function named(placement: StagePlacement, workers: number): StagePlacement {
  return typeof placement === 'string' ? placement : (namePlacement(placement, workers) ?? placement);
}
