import type { Schedule, Slot } from './action.ts';
import { execute } from './execute.ts';
import type { ScheduleShape } from './placement.ts';

/**
 * Lines a schedule up in time for reading: runs it with every action taking one step and puts each
 * action in the column of the step it starts at, with idle (`null`) slots where its worker waits. The
 * order of each worker's actions is unchanged, so the result means the same as the input. Idle slots
 * already present are dropped first. A schedule that deadlocks is returned unchanged (the validator
 * says why).
 */
export function alignSchedule(schedule: Schedule, shape: ScheduleShape): Slot[][] {
  const compact = schedule.map((list) => list.filter((slot) => slot !== null));
  const run = execute(compact, shape, () => 1);
  if (run.blocked.length > 0) return compact;
  return compact.map((list, w) => {
    const row: Slot[] = [];
    list.forEach((a, i) => {
      const step = run.start[w]![i]!;
      while (row.length < step) row.push(null);
      row.push(a);
    });
    return row;
  });
}
