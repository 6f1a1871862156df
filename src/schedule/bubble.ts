import type { Action, Schedule } from './action.ts';
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
}

/**
 * Runs a schedule on the dry-run model of `execute` (per-worker clocks, an action starts when its
 * worker is free and what it depends on has finished) and measures its bubble and memory. This is
 * the quick model for the generators; `src/sim` runs the real actor logic. Validates the schedule
 * first, so a broken one throws the validator's ScheduleError.
 *
 * Note [closed-form costs]: what the closed forms need is equal costs across *stages*; the ratio of
 * B to F does not matter in this model (the tests check B = F, B = 2F and others, exactly):
 *   GPipe, 1F1B       makespan (m+p-1)(F+B): idle fraction (p-1)/(m+p-1), bubble (p-1)/m of ideal
 *   interleaved 1F1B  costs per chunk (stage), makespan (vm+p-1)(F+B): bubble (p-1)/(vm) of ideal
 *   ZB-H1             F = I = W = 1, makespan 3m+p-1: bubble (p-1)/(3m) of ideal, against 1F1B's
 *                     (p-1)/m with B = I + W
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

  const run = execute(schedule, shape, cost);
  const busy = schedule.map((list) => list.reduce((sum, slot) => sum + (slot ? cost(slot) : 0), 0));
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
    for (const slot of list) {
      if (slot === null) continue;
      const s = slot.stage;
      if (slot.kind === 'F') peak[s] = Math.max(peak[s]!, ++current[s]!);
      else if (slot.kind === 'B' || slot.kind === 'W') current[s]!--;
    }
  return peak;
}

/**
 * The idle fraction of a step under `kind` with p equal stages, m microbatches and free messages:
 * the closed forms' bubble relative to the ideal, r = (p-1)/m for GPipe and 1F1B, (p-1)/(chunks m)
 * for interleaved 1F1B, (p-1)/(3m) for ZB-H1, as an idle fraction r / (1 + r).
 */
export function closedFormIdleFraction(kind: ScheduleKind, p: number, m: number, chunks = 1): number {
  const r =
    kind === 'interleaved-1f1b' ? (p - 1) / (chunks * m) : kind === 'zb-h1' ? (p - 1) / (3 * m) : (p - 1) / m;
  return r / (1 + r);
}
