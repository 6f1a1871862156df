import { type Action, actionsOf, type OverlappedAction, type Schedule } from './action.ts';
import type { ScheduleKind } from './config.ts';
import { execute } from './execute.ts';
import { validateSchedule } from './validate.ts';

/**
 * Time of each compute action, the same for every stage (a number) or per stage (an array indexed by
 * stage). Communication is free. Defaults: F = I = W = 1 and B = I + W (a full backward is both
 * halves), so B = 2F, the usual rule of thumb.
 */
export interface ActionCosts {
  /** A forward (default 1). */
  readonly costF?: number | readonly number[];
  /** A full backward (default costI + costW). */
  readonly costB?: number | readonly number[];
  /** The input-gradient half of a backward (default 1). */
  readonly costI?: number | readonly number[];
  /** The weight-gradient half of a backward (default 1). */
  readonly costW?: number | readonly number[];
}

/** `bubbleStats` of a schedule run with equal stage costs and free communication. */
export interface BubbleStats {
  /** Time from the first action to the last one, all workers starting at 0. */
  readonly makespan: number;
  /** Per worker, the time spent computing. */
  readonly busy: readonly number[];
  /** The time every worker would need without bubbles: the largest busy time. */
  readonly ideal: number;
  /** Idle share of the step: sum over workers of (makespan - busy), over workers * makespan. */
  readonly idleFraction: number;
  /** Bubble relative to the ideal time: (makespan - ideal) / ideal. */
  readonly bubble: number;
  /** Per stage, the most microbatches in flight at once: forward done, backward (B, or W) not yet. */
  readonly peakInFlight: readonly number[];
  /** Per worker, the same summed over its stages at each instant: what the worker holds at once. */
  readonly workerPeakInFlight: readonly number[];
}

/**
 * Runs a schedule on the dry-run model of `execute` (per-worker clocks, an action starts when its
 * worker is free and what it depends on has finished) and measures its bubble and memory. This is
 * the quick model for the generators; `src/sim` runs the real actor logic. Validates the schedule
 * first, so a broken one throws the validator's ScheduleError.
 *
 * Note [closed-form costs]: what the closed forms need is equal costs across *stages*; for the
 * schedules without a split backward the ratio of B to F does not matter in this model (the tests
 * check B = F, B = 2F and others, exactly). v chunks, costs per chunk (stage):
 *   GPipe, 1F1B       makespan (m+p-1)(F+B): idle fraction (p-1)/(m+p-1), bubble (p-1)/m of ideal
 *   interleaved 1F1B, makespan (vm + p-1 + (v-1) max(0, p-m))(F+B): bubble (p-1)/(vm) of ideal once
 *   looped BFS        m >= p; with fewer microbatches each chunk waits for the last one to come round
 *   ZB-H1             F = I = W = 1, makespan 3m+p-1: bubble (p-1)/(3m) of ideal, against 1F1B's
 *                     (p-1)/m with B = I + W
 *   interleaved ZB    F = I = W = 1, m >= p: makespan 3vm+p-1, bubble (p-1)/(3vm)
 *   ZB-V              F = I = W = 1 per chunk, m >= 2p: makespan 6m+p-1, bubble (p-1)/(6m): the steady
 *                     phase is bubble-free (the paper's "zero bubble"); what is left is the V's fill
 *   DualPipeV         F = I = W = 1, B = 2, m >= 2p: pairs launched whole (Note [overlapped F and B])
 *                     give makespan 6m+2(p-1), DeepSeek's bubble (p-1)(F&B + B - 3W) with F&B = F+B;
 *                     the runtime and the simulator start each half on its own and reach ZB-V's
 *                     6m+p-1
 * Peak memory in chunk activations per worker (F done, B or W not yet): 1F1B p-w; ZB-H1 p on every
 * worker; ZB-V 2p (the activations of p whole stages, 1F1B's worker 0, on every worker); DualPipeV
 * 2p+1 (DeepSeek's PP+1).
 * With integer costs every ratio is one correctly rounded division, so tests compare with `toBe`.
 */
export function bubbleStats(schedule: Schedule, costs: ActionCosts = {}): BubbleStats {
  const shape = validateSchedule(schedule);
  const per = (c: number | readonly number[] | undefined, fallback: (s: number) => number) => {
    if (c === undefined) return fallback;
    if (typeof c === 'number') return () => c;
    return (s: number) => c[s] ?? fallback(s);
  };
  const costI = per(costs.costI, () => 1);
  const costW = per(costs.costW, () => 1);
  const costF = per(costs.costF, () => 1);
  const costB = per(costs.costB, (s) => costI(s) + costW(s));
  const cost = (a: Action): number => {
    switch (a.kind) {
      case 'F':
        return costF(a.stage);
      case 'B':
        return costB(a.stage);
      case 'I':
        return costI(a.stage);
      case 'W':
        return costW(a.stage);
      default:
        return 0;
    }
  };

  // An overlapped pair costs both halves (Note [overlapped F and B]).
  const slotCost = (slot: Action | OverlappedAction): number =>
    slot.kind === 'OVERLAP_F_B' ? cost(slot.forward) + cost(slot.backward) : cost(slot);
  const run = execute(schedule, shape, slotCost);
  const busy = schedule.map((list) => list.reduce((sum, slot) => sum + (slot ? slotCost(slot) : 0), 0));
  const ideal = Math.max(0, ...busy);
  const { makespan } = run;
  const workers = schedule.length;
  const totalBusy = busy.reduce((a, b) => a + b, 0);
  return {
    makespan,
    busy,
    ideal,
    idleFraction: makespan > 0 ? (workers * makespan - totalBusy) / (workers * makespan) : 0,
    bubble: ideal > 0 ? (makespan - ideal) / ideal : 0,
    peakInFlight: peakInFlight(schedule, shape.stages),
    workerPeakInFlight: workerPeakInFlight(schedule),
  };
}

/**
 * Per stage, the most microbatches whose forward has run and whose backward has not finished (the
 * activations a stage keeps). A stage's actions all run on one worker, one at a time, so walking that
 * worker's list in order gives the same count as walking the clock.
 */
export function peakInFlight(schedule: Schedule, stages: number): number[] {
  const current = new Array<number>(stages).fill(0);
  const peak = new Array<number>(stages).fill(0);
  for (const list of schedule)
    for (const slot of list)
      for (const a of actionsOf(slot)) {
        const s = a.stage;
        if (a.kind === 'F') peak[s] = Math.max(peak[s]!, ++current[s]!);
        else if (a.kind === 'B' || a.kind === 'W') current[s]!--;
      }
  return peak;
}

/**
 * Per worker, the most microbatches in flight at once over all its stages. A worker's count changes
 * only with its own actions, so its list in order gives it; it is not the sum of its stages' peaks,
 * which come at different times (11 against 8 + 4 on worker 0 of interleaved 1F1B, p = 4, m = 8).
 */
export function workerPeakInFlight(schedule: Schedule): number[] {
  return schedule.map((list) => {
    let current = 0;
    let peak = 0;
    for (const slot of list) {
      if (slot === null) continue;
      const halves = slot.kind === 'OVERLAP_F_B' ? [slot.forward, slot.backward] : [slot];
      for (const a of halves) {
        if (a.kind === 'F') peak = Math.max(peak, ++current);
        else if (a.kind === 'B' || a.kind === 'W') current--;
      }
    }
    return peak;
  });
}

/**
 * The idle fraction of a step under `kind` with p equal stages, m microbatches and free messages, as
 * the runtime runs it: the closed forms' bubble relative to the ideal (Note [closed-form costs]),
 * r = (p-1)/m for GPipe and 1F1B, (p-1 + (v-1) max(0, p-m))/(v m) for interleaved 1F1B and looped
 * BFS, (p-1)/(3 v m) for ZB-H1 and interleaved ZB (m >= p), (p-1)/(6m) for ZB-V and DualPipeV (m >= 2p),
 * as an idle fraction r / (1 + r). `chunks` defaults as the configuration does.
 */
export function closedFormIdleFraction(kind: ScheduleKind, p: number, m: number, chunks?: number): number {
  const v = chunks ?? (kind === 'zb-v' || kind === 'dualpipe-v' ? 2 : 1);
  const r = RATIO[kind](p, m, v);
  return r / (1 + r);
}

const RATIO: Record<ScheduleKind, (p: number, m: number, v: number) => number> = {
  gpipe: (p, m) => (p - 1) / m,
  '1f1b': (p, m) => (p - 1) / m,
  'interleaved-1f1b': (p, m, v) => (p - 1 + (v - 1) * Math.max(0, p - m)) / (v * m),
  'looped-bfs': (p, m, v) => (p - 1 + (v - 1) * Math.max(0, p - m)) / (v * m),
  'zb-h1': (p, m) => (p - 1) / (3 * m),
  'interleaved-zb': (p, m, v) => (p - 1) / (3 * v * m),
  'zb-v': (p, m) => (p - 1) / (6 * m),
  'dualpipe-v': (p, m) => (p - 1) / (6 * m),
};
