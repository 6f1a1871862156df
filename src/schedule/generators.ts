import { type Action, action, type Slot } from './action.ts';
import { alignSchedule } from './align.ts';
import { type CheckedConfig, checkPipelineConfig, type PipelineConfig, type ScheduleKind } from './config.ts';
import {
  type PlacedSchedule,
  resolveStagePlacement,
  type ScheduleShape,
  type StagePlacement,
} from './placement.ts';

/**
 * The schedule generators: pure functions of (workers p, microbatches m, chunks v) that return the
 * compute-only schedule (F, B, I, W), lined up in time with `alignSchedule` so that the grid reads like
 * the textbook pictures. `insertCommunication` adds the sends and receives; `validateSchedule` checks
 * any of them. Each generator checks its configuration first (`checkPipelineConfig`) and throws a
 * ScheduleError before anything is built. Each also says where its stages run (Note [stage
 * placement]): `generatePlacedSchedule` returns the schedule with that placement.
 */
export function generateSchedule(kind: ScheduleKind, config: PipelineConfig): Slot[][] {
  const checked = checkPipelineConfig(kind, config);
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

/** Interleaved 1F1B (Megatron-LM): v chunks per worker, looping placement, m a multiple of p. */
export function scheduleInterleaved1F1B(config: PipelineConfig): Slot[][] {
  return generateSchedule('interleaved-1f1b', config);
}

/** ZB-H1 (zero bubble, Qi et al. 2023): 1F1B with the backward split into I and W, W deferred. */
export function scheduleZBH1(config: PipelineConfig): Slot[][] {
  return generateSchedule('zb-h1', config);
}

/** A generator: each worker's order of compute actions, and where the stages it names run. */
interface Generator {
  readonly order: (c: CheckedConfig) => Action[][];
  readonly stagePlacement: StagePlacement;
}

const GENERATORS: Record<ScheduleKind, Generator> = {
  gpipe: { order: gpipeOrder, stagePlacement: 'loop' },
  '1f1b': { order: oneFOneBOrder, stagePlacement: 'loop' },
  'interleaved-1f1b': { order: interleavedOrder, stagePlacement: 'loop' },
  'zb-h1': { order: zbH1Order, stagePlacement: 'loop' },
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
 * Interleaved 1F1B, Megatron-LM's order. Worker w runs m*v forwards and m*v backwards, numbered k.
 * Forwards walk the microbatches in rounds of p per chunk: k -> chunk (k / p) % v, microbatch
 * (k / (p v)) p + k % p; backwards the same with the chunks reversed. Worker w warms up with
 * 2 (p-1-w) + (v-1) p forwards (two steps per hop for the first backward to come back, and a full
 * round on every chunk but the last), then alternates F and B, then drains.
 */
function interleavedOrder({ workers: p, microbatches: m, chunks: v }: CheckedConfig): Action[][] {
  const total = m * v;
  const virtual = (kind: 'F' | 'B', w: number, k: number): Action => {
    const inRound = k % (p * v);
    const chunk = Math.floor(inRound / p);
    const mb = Math.floor(k / (p * v)) * p + (inRound % p);
    return action(kind, (kind === 'F' ? chunk : v - 1 - chunk) * p + w, mb);
  };
  return range(p).map((w) => {
    const warmup = Math.min(2 * (p - 1 - w) + (v - 1) * p, total);
    const list = range(warmup).map((k) => virtual('F', w, k));
    for (let k = 0; k < total - warmup; k++) list.push(virtual('F', w, k + warmup), virtual('B', w, k));
    for (let k = total - warmup; k < total; k++) list.push(virtual('B', w, k));
    return list;
  });
}

/**
 * ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism", the handcrafted schedule with 1F1B's
 * memory). Worker s keeps 1F1B's warmup of p-1-s forwards and runs F, I in the steady phase; the W of
 * microbatch k runs s steps later than its I, filling the time 1F1B's worker s spends waiting for
 * gradients. Worker s then holds at most (p-1-s) + 1 + s = p microbatches, 1F1B's peak; with equal F,
 * I and W times the bubble shrinks from 3(p-1) to p-1 steps.
 */
function zbH1Order({ workers, microbatches }: CheckedConfig): Action[][] {
  return range(workers).map((s) => {
    const warmup = Math.min(workers - 1 - s, microbatches);
    const delay = s;
    const list = range(warmup).map((mb) => action('F', s, mb));
    let weights = 0;
    for (let k = 0; k < microbatches; k++) {
      if (k + warmup < microbatches) list.push(action('F', s, k + warmup));
      list.push(action('I', s, k));
      if (k >= delay) list.push(action('W', s, weights++));
    }
    while (weights < microbatches) list.push(action('W', s, weights++));
    return list;
  });
}
