import { ScheduleError } from '../errors.ts';
import { ACTION_FORM, formatSlot, OVERLAP_FORM, parseSlot, type Schedule, type Slot } from './action.ts';
import { type PlacedSchedule, STAGE_PLACEMENT_NAMES, type StagePlacement } from './placement.ts';

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
 * A first line `placement,v` (or `placement,0,1,1,0`) names the rows' stage placement: read and
 * written by the placed-schedule functions below. An overlapped pair is one cell, `(0F3;7B1)OVERLAP_F_B`.
 */
export function scheduleToCsv(schedule: Schedule): string {
  if (schedule.length === 0) return '';
  return schedule.map((list) => trimIdle(list).map(formatSlot).join(',')).join('\n') + '\n';
}

/**
 * Reads a schedule from its CSV form (one row per worker, one cell per step, an empty cell idle); a
 * ScheduleError names the row and cell of a malformed action. The schedule is not validated: see
 * `validateSchedule`.
 */
export function scheduleFromCsv(csv: string): Slot[][] {
  const lines = csv.split(/\r?\n/);
  // One line break ends the last row; it does not start another one.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length > 0 && isPlacementLine(lines[0]!))
    throw new ScheduleError(
      `schedule CSV: row 1 names a stage placement (${JSON.stringify(lines[0])}); read it with placedScheduleFromCsv`,
      { rule: 'csv cell', row: 1, found: lines[0] },
    );
  return rowsFromCsv(lines);
}

/** A schedule and its stage placement: the first line `placement,<name or workers>`, else 'loop'. */
export function placedScheduleFromCsv(csv: string): PlacedSchedule {
  const [first = '', ...rest] = csv.split(/\r?\n/);
  if (!isPlacementLine(first)) return { schedule: scheduleFromCsv(csv), stagePlacement: 'loop' };
  const cells = first
    .split(',')
    .slice(1)
    .map((c) => unquote(c.trim()));
  const named = cells.length === 1 && (STAGE_PLACEMENT_NAMES as readonly string[]).includes(cells[0]!);
  const workers = cells.map(Number);
  if (!named && (cells.length === 0 || cells.some((c) => !/^\d+$/.test(c))))
    throw new ScheduleError(
      `schedule CSV: row 1 ${JSON.stringify(first)}: expected placement,<name> (${STAGE_PLACEMENT_NAMES.join(' or ')}) ` +
        'or placement,<worker of stage 0>,<worker of stage 1>,...',
      { rule: 'csv cell', row: 1, found: first },
    );
  const stagePlacement = named ? (cells[0] as StagePlacement) : workers;
  if (rest.length > 0 && rest[rest.length - 1] === '') rest.pop();
  return { schedule: rowsFromCsv(rest, 1), stagePlacement };
}

/** The CSV of a placed schedule: its placement line, then its rows. */
export function placedScheduleToCsv({ schedule, stagePlacement }: PlacedSchedule): string {
  const placement = typeof stagePlacement === 'string' ? stagePlacement : stagePlacement.join(',');
  return `placement,${placement}\n${scheduleToCsv(schedule)}`;
}

function isPlacementLine(line: string): boolean {
  return unquote(line.split(',')[0]!.trim()) === 'placement';
}

/** Rows of cells; `offset` lines came before them (for the row numbers errors give). */
function rowsFromCsv(lines: readonly string[], offset = 0): Slot[][] {
  return lines.map((line, index) => {
    const row = index + offset;
    const worker = index;
    return trimIdle(
      line.split(',').map((raw, column): Slot => {
        const cell = unquote(raw.trim());
        if (cell === '') return null;
        try {
          return parseSlot(cell);
        } catch {
          throw new ScheduleError(
            `schedule CSV: row ${row + 1} (worker ${worker}), column ${column + 1} (step ${column}): ` +
              `bad cell ${JSON.stringify(raw)}; expected an empty cell (idle) or ${ACTION_FORM}, or a pair ${OVERLAP_FORM}`,
            { rule: 'csv cell', worker, step: column, row: row + 1, column: column + 1, found: raw },
          );
        }
      }),
    );
  });
}

function unquote(cell: string): string {
  return cell.length >= 2 && cell.startsWith('"') && cell.endsWith('"') ? cell.slice(1, -1).trim() : cell;
}

function trimIdle(list: readonly Slot[]): Slot[] {
  let end = list.length;
  while (end > 0 && list[end - 1] === null) end--;
  return list.slice(0, end);
}
