import { ScheduleError } from '../../src/errors.ts';
import { parseAction, type Slot } from '../../src/schedule/action.ts';
import { thrown } from './errors.ts';

/** The ScheduleError `f` throws. */
export const scheduleError = (f: () => unknown): ScheduleError => thrown(ScheduleError, f);

/** A schedule from rows of action texts, `.` for idle: `'0F0 0B0|. 1F0 1B0'`. */
export const grid = (text: string): Slot[][] =>
  text.split('|').map((row) =>
    row
      .trim()
      .split(/\s+/)
      .map((cell) => (cell === '.' ? null : parseAction(cell))),
  );
