import { type Action, isCompute, type Schedule } from './action.ts';
import { EVENTS, type ExtraDependencies, execute } from './execute.ts';
import type { ScheduleShape } from './placement.ts';

const F = EVENTS.indexOf('F');

/**
 * The smallest credit window (in microbatches, a power of two) under which the schedule's compute
 * actions still run to the end (Note [activation credits] in src/actor/flow-control.ts): a dry run in
 * which stage s's forward of microbatch mb also waits for the forward of mb - window of every stage in
 * `waits[s]` (the stages that read what s sends to other workers). Every microbatch (no limit at all)
 * when no smaller window runs to the end, and when some stage's forwards are not in microbatch order
 * (then one forward done would not mean every earlier one is). Sends and receives are left out, as
 * the runtime leaves them out.
 */
export function minCreditWindow(
  schedule: Schedule,
  shape: ScheduleShape,
  waits: readonly (readonly number[])[],
): number {
  const m = shape.microbatches;
  // Overlapped F and B pairs (DualPipeV) run two microbatches' halves as one slot: no window is
  // worked out for them, so they run without a limit.
  if (schedule.some((list) => list.some((a) => a !== null && a.kind === 'OVERLAP_F_B'))) return m;
  const compute = schedule.map((list) =>
    list.filter((a): a is Action => a !== null && a.kind !== 'OVERLAP_F_B' && isCompute(a)),
  );
  if (!forwardsInOrder(compute)) return m;
  const plain: ScheduleShape = { ...shape, explicitCommunication: false };
  for (let window = 1; window < m; window *= 2) {
    const credits: ExtraDependencies = (a, events, out, n) => {
      if (a.kind !== 'F' || a.microbatch < window) return n;
      for (const stage of waits[a.stage] ?? []) out[n++] = events.key(F, stage, a.microbatch - window);
      return n;
    };
    if (execute(compute, plain, undefined, credits).blocked.length === 0) return window;
  }
  return m;
}

/** Whether every stage's forwards come in increasing microbatch order (a stage runs on one worker). */
function forwardsInOrder(schedule: readonly (readonly Action[])[]): boolean {
  const last = new Map<number, number>();
  for (const list of schedule) {
    for (const a of list) {
      if (a.kind !== 'F') continue;
      if (a.microbatch <= (last.get(a.stage) ?? -1)) return false;
      last.set(a.stage, a.microbatch);
    }
  }
  return true;
}
