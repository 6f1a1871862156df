import { formatSlot, type Schedule } from './action.ts';

// The grid printer: one row per worker, one column per step of the workers' lists, cells aligned.
// An idle slot prints as `.`; a worker whose list has ended prints nothing. Marked cells print as
// `>1F3<`:
//
//   step       0     1     2     3     4
//   worker 0   0F0   0F1   .     0B0   0B1
//   worker 1   .     1F0  >1B0<  1F1   1B1

/** A cell of the grid: a worker and a step of its list. */
export interface GridMark {
  /** The worker (row). */
  readonly worker: number;
  /** The step (column). */
  readonly step: number;
}

/** What `formatGrid` prints: which steps and workers, and which cells it marks. */
export interface GridOptions {
  /** Cells to mark with `>...<`. */
  readonly marks?: readonly GridMark[];
  /** First step to print (default 0). */
  readonly from?: number;
  /** One past the last step to print (default: the longest list). */
  readonly to?: number;
  /** Workers to print, in this order (default: all). */
  readonly workers?: readonly number[];
}

const IDLE = '.';
const ELIDED = '...';

/**
 * A schedule as a grid: one row per worker, one column per step, idle steps as `.`, marked cells as
 * `>1F3<`.
 */
export function formatGrid(schedule: Schedule, options: GridOptions = {}): string {
  const length = Math.max(0, ...schedule.map((list) => list.length));
  const from = Math.max(0, options.from ?? 0);
  const to = Math.min(length, options.to ?? length);
  const workers = options.workers ?? schedule.map((_, w) => w);
  const marked = new Set((options.marks ?? []).map((m) => `${m.worker}:${m.step}`));

  const steps = Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
  const text = (w: number, step: number): string => {
    const list = schedule[w] ?? [];
    if (step >= list.length) return '';
    const slot = list[step];
    return slot ? formatSlot(slot) : IDLE;
  };
  const widths = steps.map((step) =>
    Math.max(String(step).length, ...workers.map((w) => text(w, step).length)),
  );
  const cell = (content: string, width: number, mark: boolean) =>
    (mark ? `>${content}<` : ` ${content} `).padEnd(width + 2);

  const labels = ['step', ...workers.map((w) => `worker ${w}`)];
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const before = from > 0 ? ` ${ELIDED} ` : '';
  const after = to < length ? ` ${ELIDED}` : '';
  const header = steps.map((step, i) => cell(String(step), widths[i]!, false)).join(' ');
  const lines = [`${'step'.padEnd(labelWidth)} ${before}${header}${after}`];
  for (const w of workers) {
    const row = steps.map((step, i) => cell(text(w, step), widths[i]!, marked.has(`${w}:${step}`))).join(' ');
    lines.push(`${`worker ${w}`.padEnd(labelWidth)} ${before}${row}${after}`);
  }
  return lines.map((line) => line.trimEnd()).join('\n');
}

/**
 * The grid as errors show it: whole when small; for a long or wide schedule, the steps and workers
 * around the marks, so that a 256-stage schedule still yields a readable message.
 */
export function formatGridAround(schedule: Schedule, marks: readonly GridMark[]): string {
  const MAX_STEPS = 40;
  const MAX_WORKERS = 24;
  const RADIUS = 10;
  const length = Math.max(0, ...schedule.map((list) => list.length));
  const options: { marks: readonly GridMark[]; from?: number; to?: number; workers?: number[] } = { marks };
  if (length > MAX_STEPS && marks.length > 0) {
    options.from = Math.min(...marks.map((m) => m.step)) - RADIUS;
    options.to = Math.max(...marks.map((m) => m.step)) + RADIUS + 1;
  }
  if (schedule.length > MAX_WORKERS && marks.length > 0) {
    const near = new Set<number>();
    for (const m of marks)
      for (let w = m.worker - 1; w <= m.worker + 1; w++) if (w >= 0 && w < schedule.length) near.add(w);
    options.workers = [...near].sort((a, b) => a - b);
  }
  return formatGrid(schedule, options);
}
