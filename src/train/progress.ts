/** Where a progress bar writes: process.stdout, or a fake in tests. */
export interface ProgressStream {
  /** Writes text. */
  write(chunk: string): unknown;
  /** A terminal: the bar redraws in place. */
  isTTY?: boolean;
  /** The terminal's width (unknown or 0: 80). */
  columns?: number;
}

export type ProgressFields = Readonly<Record<string, number | string>>;

export interface ProgressOptions {
  total: number;
  label?: string;
  /** What is counted, for the rate (default 'steps'). */
  unit?: string;
  /** Default process.stdout. */
  stream?: ProgressStream;
  /** Redraw in place; default: the stream is a TTY and the `CI` environment variable is not set. */
  interactive?: boolean;
  /** Milliseconds, default performance.now: tests pass a fake clock and never sleep. */
  clock?: () => number;
  /** On a pipe or in CI, print a plain line at most this often (ms, default 5000). */
  plainIntervalMs?: number;
  /** On a TTY, redraw at most this often (ms, default 100). */
  redrawIntervalMs?: number;
}

export interface ProgressState {
  label: string;
  unit: string;
  done: number;
  total: number;
  elapsedMs: number;
  fields: ProgressFields;
}

/**
 * A progress bar. On a terminal it redraws one line in place (`\r`, cut to the terminal's width);
 * on a pipe or in CI, where `\r` would pile up in a log, it prints a plain line every few seconds.
 * Either way `finish` prints the final state on its own line.
 */
export class ProgressBar {
  private readonly stream: ProgressStream;
  private readonly clock: () => number;
  private readonly interactive: boolean;
  private readonly started: number;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private drawn = false;
  private finished = false;
  private state: ProgressState;

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stdout;
    this.clock = options.clock ?? (() => performance.now());
    this.interactive = options.interactive ?? (this.stream.isTTY === true && !process.env['CI']);
    this.started = this.clock();
    this.state = {
      label: options.label ?? '',
      unit: options.unit ?? 'steps',
      done: 0,
      total: options.total,
      elapsedMs: 0,
      fields: {},
    };
  }

  /** Sets the count (and fields such as loss); draws when the interval since the last draw is over. */
  update(done: number, fields: ProgressFields = this.state.fields): void {
    if (this.finished) return;
    const now = this.clock();
    this.state = { ...this.state, done, fields, elapsedMs: now - this.started };
    const interval = this.interactive
      ? (this.options.redrawIntervalMs ?? 100)
      : (this.options.plainIntervalMs ?? 5000);
    if (now - this.lastDraw >= interval || done >= this.state.total) this.draw(now);
  }

  tick(n = 1, fields?: ProgressFields): void {
    this.update(this.state.done + n, fields);
  }

  /** Prints a line of its own without garbling the bar (on a TTY the bar is drawn again below it). */
  log(line: string): void {
    if (this.interactive && this.drawn) this.stream.write(`\r\x1b[K${line}\n`);
    else this.stream.write(`${line}\n`);
    if (this.interactive && this.drawn && !this.finished) this.stream.write(this.line());
  }

  /** Draws the final state and ends the line; later updates are ignored. */
  finish(fields?: ProgressFields): void {
    if (this.finished) return;
    const now = this.clock();
    this.state = { ...this.state, fields: fields ?? this.state.fields, elapsedMs: now - this.started };
    this.draw(now);
    if (this.interactive) this.stream.write('\n');
    this.finished = true;
  }

  private draw(now: number): void {
    this.lastDraw = now;
    this.drawn = true;
    this.stream.write(this.interactive ? this.line() : `${formatProgress(this.state)}\n`);
  }

  private line(): string {
    // Some terminals (and pseudo-terminals without a size) report 0 columns: then 80, as when unknown.
    const columns = this.stream.columns !== undefined && this.stream.columns > 0 ? this.stream.columns : 80;
    return `\r${formatProgress(this.state, columns - 1)}\x1b[K`;
  }
}

/**
 * One line of progress: `label [████▌    ] 45/100 45% loss 0.1234 1.2k steps/s eta 12s`. With a
 * `width`, the bar takes the room the text leaves (dropped when under 10 columns) and the line is cut
 * to fit; without one, there is no bar (the plain lines of a log).
 */
export function formatProgress(s: ProgressState, width?: number): string {
  const fraction = s.total > 0 ? Math.min(1, Math.max(0, s.done / s.total)) : 0;
  const rate = s.elapsedMs > 0 ? (s.done * 1000) / s.elapsedMs : 0;
  const parts = [`${s.done}/${s.total}`, `${Math.floor(fraction * 100)}%`];
  for (const [key, value] of Object.entries(s.fields)) parts.push(`${key} ${formatValue(value)}`);
  if (rate > 0) parts.push(`${formatRate(rate)} ${s.unit}/s`);
  if (rate > 0 && s.done < s.total) parts.push(`eta ${formatDuration((s.total - s.done) / rate)}`);
  else parts.push(`${formatDuration(s.elapsedMs / 1000)}`);
  const text = parts.join('  ');
  const label = s.label ? `${s.label} ` : '';
  if (width === undefined) return `${label}${text}`;
  const room = width - label.length - text.length - 4;
  const line = room >= 10 ? `${label}[${bar(fraction, Math.min(room, 40))}]  ${text}` : `${label}${text}`;
  return [...line].slice(0, Math.max(0, width)).join('');
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

function bar(fraction: number, width: number): string {
  const eighths = Math.round(fraction * width * 8);
  const full = Math.floor(eighths / 8);
  const part = EIGHTHS[eighths % 8]!;
  return `${'█'.repeat(full)}${part}${' '.repeat(width - full - (part ? 1 : 0))}`;
}

/** Integers as they are, other numbers to 4 significant digits. */
export function formatValue(value: number | string): string {
  if (typeof value === 'string') return value;
  if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

function formatRate(rate: number): string {
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(1)}M`;
  if (rate >= 1e4) return `${(rate / 1e3).toFixed(1)}k`;
  return rate >= 100 ? rate.toFixed(0) : rate.toPrecision(3);
}

/** 12s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
