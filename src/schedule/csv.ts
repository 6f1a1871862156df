import { ScheduleError } from '../errors.ts';
import { ACTION_FORM, type Action, formatSlot, parseAction, type Schedule, type Slot } from './action.ts';

/**
 * The CSV form of a schedule, for writing one by hand or in a spreadsheet: one row per worker (row 1
 * is worker 0), one cell per step, an empty cell for an idle step:
 *
 *   0F0,0F1,,0B0,0B1
 *   ,1F0,1B0,1F1,1B1
 *
 * Cells may be padded with spaces or wrapped in double quotes. Trailing idle steps mean nothing, so
 * both directions drop them; `scheduleFromCsv(scheduleToCsv(s))` equals `s` for every schedule whose
 * lists do not end in idle slots (all generated ones). A blank line is a worker with nothing to do.
 */
export function scheduleToCsv(schedule: Schedule): string {
  if (schedule.length === 0) return '';
  return schedule.map((list) => trimIdle(list).map(formatSlot).join(',')).join('\n') + '\n';
}

export function scheduleFromCsv(csv: string): Slot[][] {
  const lines = csv.split(/\r?\n/);
  // One line break ends the last row; it does not start another one.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.map((line, row) =>
    trimIdle(
      line.split(',').map((raw, column): Slot => {
        const cell = unquote(raw.trim());
        if (cell === '') return null;
        try {
          return parseAction(cell);
        } catch {
          throw new ScheduleError(
            `schedule CSV: row ${row + 1} (worker ${row}), column ${column + 1} (step ${column}): ` +
              `bad cell ${JSON.stringify(raw)}; expected an empty cell (idle) or ${ACTION_FORM}`,
            { rule: 'csv cell', worker: row, step: column, row: row + 1, column: column + 1, found: raw },
          );
        }
      }),
    ),
  );
}

function unquote(cell: string): string {
  return cell.length >= 2 && cell.startsWith('"') && cell.endsWith('"') ? cell.slice(1, -1).trim() : cell;
}

function trimIdle(list: readonly Slot[]): Slot[] {
  let end = list.length;
  while (end > 0 && list[end - 1] === null) end--;
  return list.slice(0, end) as (Action | null)[];
}
