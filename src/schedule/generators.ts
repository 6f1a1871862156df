import { type Action, action, type OverlappedAction, type Slot } from './action.ts';
import { alignSchedule } from './align.ts';
import {
  type CheckedConfig,
  checkPipelineConfig,
  interleavedRounds,
  type PipelineConfig,
  type ScheduleKind,
} from './config.ts';
import {
  type PlacedSchedule,
  resolveStagePlacement,
  type ScheduleShape,
  type StagePlacement,
} from './placement.ts';
import { dualPipeVOrder, zbVOrder } from './v-schedules.ts';

/**
 * The schedule generators: pure functions of (workers p, microbatches m, chunks v) that return the
 * compute-only schedule (F, B, I, W, and DualPipeV's overlapped pairs), lined up in time with
 * `alignSchedule` so that the grid reads like the textbook pictures. The orders are PyTorch's
 * (torch.distributed.pipelining), each written here as a small function of its own; GENERATORS is the
 * table of them. `insertCommunication` adds the sends and receives; `validateSchedule` checks
 * any of them. Each generator checks its configuration first (`checkPipelineConfig`) and throws a
 * ScheduleError before anything is built. Each also says where its stages run (Note [stage
 * placement]): `generatePlacedSchedule` returns the schedule with that placement.
 */
export function generateSchedule(kind: ScheduleKind, config: PipelineConfig): Slot[][] {
  const checked = checkPipelineConfig(kind, config);
  // Megatron-LM's interleaving with one chunk is 1F1B (PyTorch's would warm up with twice as many).
  const { order, stagePlacement } =
    GENERATORS[checked.chunks === 1 && kind === 'interleaved-1f1b' ? '1f1b' : kind];
  return alignSchedule(order(checked), shapeOf(checked, stagePlacement));
}

/** The generated schedule with the stage placement its rows assume. */
export function generatePlacedSchedule(kind: ScheduleKind, config: PipelineConfig): PlacedSchedule {
  return { schedule: generateSchedule(kind, config), stagePlacement: schedulePlacement(kind) };
}

/** Where the stages of a generated schedule run. */
export function schedulePlacement(kind: ScheduleKind): StagePlacement {
  return GENERATORS[kind].stagePlacement;
}

/** GPipe: every forward, then every backward (fill, drain). Any m >= 1. */
export function scheduleGPipe(config: PipelineConfig): Slot[][] {
  return generateSchedule('gpipe', config);
}

/** 1F1B: p-1-w warmup forwards on worker w, then one forward and one backward, then the drain. */
export function schedule1F1B(config: PipelineConfig): Slot[][] {
  return generateSchedule('1f1b', config);
}

/** Interleaved 1F1B (Megatron-LM): v chunks per worker, looping placement, in rounds of microbatches. */
export function scheduleInterleaved1F1B(config: PipelineConfig): Slot[][] {
  return generateSchedule('interleaved-1f1b', config);
}

/** ZB-H1 (zero bubble, Qi et al. 2023): 1F1B with the backward split into I and W, W deferred. */
export function scheduleZBH1(config: PipelineConfig): Slot[][] {
  return generateSchedule('zb-h1', config);
}

/** Interleaved zero bubble (ZB1P over v chunks, PyTorch's ScheduleInterleavedZeroBubble). */
export function scheduleInterleavedZB(config: PipelineConfig): Slot[][] {
  return generateSchedule('interleaved-zb', config);
}

/** Looped BFS (Lamy-Poirier 2023): every forward of a chunk before the next chunk, then back. */
export function scheduleLoopedBFS(config: PipelineConfig): Slot[][] {
  return generateSchedule('looped-bfs', config);
}

/** ZB-V (Qi et al. 2023): two chunks per worker in a V, split backward, W filling the bubbles. */
export function scheduleZBV(config: PipelineConfig): Slot[][] {
  return generateSchedule('zb-v', config);
}

/** DualPipeV (DeepSeek 2024): a V whose steady phase overlaps F and B of two microbatches. */
export function scheduleDualPipeV(config: PipelineConfig): Slot[][] {
  return generateSchedule('dualpipe-v', config);
}

/** A generator: each worker's order of compute actions (and pairs), and where its stages run. */
interface Generator {
  readonly order: (c: CheckedConfig) => (Action | OverlappedAction)[][];
  readonly stagePlacement: StagePlacement;
}

const GENERATORS: Record<ScheduleKind, Generator> = {
  gpipe: { order: gpipeOrder, stagePlacement: 'loop' },
  '1f1b': { order: oneFOneBOrder, stagePlacement: 'loop' },
  'interleaved-1f1b': { order: (c) => interleavedOrder(c, false), stagePlacement: 'loop' },
  'zb-h1': { order: (c) => interleavedOrder(c, true), stagePlacement: 'loop' },
  'interleaved-zb': { order: (c) => interleavedOrder(c, true), stagePlacement: 'loop' },
  'looped-bfs': { order: loopedBfsOrder, stagePlacement: 'loop' },
  'zb-v': { order: zbVOrder, stagePlacement: 'v' },
  'dualpipe-v': { order: dualPipeVOrder, stagePlacement: 'v' },
};

function shapeOf(c: CheckedConfig, stagePlacement: StagePlacement): ScheduleShape {
  return {
    workers: c.workers,
    stages: c.stages,
    microbatches: c.microbatches,
    workerOfStage: resolveStagePlacement(stagePlacement, c.stages, c.workers),
    explicitCommunication: false,
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function gpipeOrder({ workers, microbatches }: CheckedConfig): Action[][] {
  return range(workers).map((s) => [
    ...range(microbatches).map((mb) => action('F', s, mb)),
    ...range(microbatches).map((mb) => action('B', s, mb)),
  ]);
}

/** Worker s: warmup min(p-1-s, m) forwards, steady F(k + warmup) B(k), cooldown of the last backwards. */
function oneFOneBOrder({ workers, microbatches }: CheckedConfig): Action[][] {
  return range(workers).map((s) => {
    const warmup = Math.min(workers - 1 - s, microbatches);
    const list = range(warmup).map((mb) => action('F', s, mb));
    for (let k = 0; k < microbatches - warmup; k++) list.push(action('F', s, k + warmup), action('B', s, k));
    for (let k = microbatches - warmup; k < microbatches; k++) list.push(action('B', s, k));
    return list;
  });
}

/**
 * The interleaved orders, PyTorch's (Note [interleaved rounds]). Worker w runs m*v forwards and m*v
 * backwards, numbered k. With r microbatches per round, forward k is chunk (k / r) % v of microbatch
 * (k / (r v)) r + k % r; backward k the same with the chunks reversed. A full round on every chunk but
 * the last comes first, then one warmup forward per hop for ZB1P, two for 1F1B (a backward takes two
 * steps per hop to come back; an I only one), then one forward and one backward, then the drain.
 *
 * Zero bubble (ZB-H1, and ZB1P over chunks): the backward is I, and worker w defers the W of its
 * k-th backward until after its (k+w)-th I, in the order of the I's; the rest drain at the end. The
 * W's then fill the time in which 1F1B's worker w waits for gradients. In flight on worker w (F done, W
 * not yet): its warmup plus one, plus w deferred W's. With one chunk that is (p-1-w) + 1 + w = p on
 * every worker (once m >= p), where 1F1B's worker w holds p-w: ZB-H1 matches 1F1B's peak on worker 0
 * only, and holds w more on worker w, each waiting for its W only (which needs less than a B, the
 * activation gradients being gone).
 */
function interleavedOrder(c: CheckedConfig, zeroBubble: boolean): Action[][] {
  const { workers: p, microbatches: m, chunks: v } = c;
  // Note: with one chunk the rounds do not change the order (forward k is microbatch k), and m need
  // not be a multiple of them (ZB-H1 takes any m >= p): a fractional round would make fractional
  // microbatches, so one chunk runs as one round.
  const perRound = v === 1 ? m : m / interleavedRounds(p, m);
  const total = m * v;
  const virtual = (kind: 'F' | 'B' | 'I' | 'W', w: number, k: number): Action => {
    const inRound = k % (perRound * v);
    const chunk = Math.floor(inRound / perRound);
    const mb = Math.floor(k / (perRound * v)) * perRound + (inRound % perRound);
    return action(kind, (kind === 'F' ? chunk : v - 1 - chunk) * p + w, mb);
  };
  return range(p).map((w) => {
    const warmup = Math.min((v - 1) * perRound + (zeroBubble ? 1 : 2) * (p - 1 - w), total);
    const list = range(warmup).map((k) => virtual('F', w, k));
    let weights = 0;
    for (let k = 0; k < total; k++) {
      if (k + warmup < total) list.push(virtual('F', w, k + warmup));
      list.push(virtual(zeroBubble ? 'I' : 'B', w, k));
      if (zeroBubble && k >= w) list.push(virtual('W', w, weights++));
    }
    while (zeroBubble && weights < total) list.push(virtual('W', w, weights++));
    return list;
  });
}

/**
 * Looped BFS (breadth-first, PyTorch's ScheduleLoopedBFS): worker w runs every microbatch forward
 * through its first chunk, then its second ..., then the backwards from the last chunk back, each
 * chunk's microbatches in reverse order (the last one forward is the first one back). GPipe over the
 * looping placement: activations for all m v microbatch-chunks are kept at the turn.
 */
function loopedBfsOrder({ workers: p, microbatches: m, chunks: v }: CheckedConfig): Action[][] {
  return range(p).map((w) => [
    ...range(v).flatMap((c) => range(m).map((mb) => action('F', c * p + w, mb))),
    ...range(v)
      .reverse()
      .flatMap((c) =>
        range(m)
          .reverse()
          .map((mb) => action('B', c * p + w, mb)),
      ),
  ]);
}
