import { extent, maxOf, minOf } from '../util/extent.ts';
/** One point of a loss curve. */
export interface CurvePoint {
  /** The step (x). */
  step: number;
  /** The loss (y). */
  loss: number;
}

/** One line of a loss chart, with its name in the legend. */
export interface CurveSeries {
  /** Its name in the legend. */
  name: string;
  /** Its points, by step. */
  points: readonly CurvePoint[];
}

/** `lossCurveSvg`'s size, title and axis labels. */
export interface SvgChartOptions {
  /** Width in pixels (default 640). */
  width?: number;
  /** Height in pixels (default 400). */
  height?: number;
  /** The title above the plot. */
  title?: string;
  /** The x axis label (default 'step'). */
  xLabel?: string;
  /** The y axis label (default 'loss'). */
  yLabel?: string;
  /** A logarithmic loss axis (points <= 0 are left out). */
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const MARGIN = { left: 64, right: 20, top: 36, bottom: 48 };

/**
 * A loss curve as a standalone SVG document: axes with "nice" ticks (1, 2, 5 x 10^k), grid lines,
 * labels, a title, and one line per series with a legend when there is more than one. Non-finite
 * losses break a line rather than bend it. The same input always gives the same text.
 */
export function lossCurveSvg(
  data: readonly CurvePoint[] | readonly CurveSeries[],
  options: SvgChartOptions = {},
): string {
  const series: readonly CurveSeries[] =
    data.length > 0 && 'points' in data[0]!
      ? (data as readonly CurveSeries[])
      : [{ name: 'loss', points: data as readonly CurvePoint[] }];
  const width = options.width ?? 640;
  const height = options.height ?? 400;
  const logY = options.logY ?? false;
  const usable = (p: CurvePoint) =>
    Number.isFinite(p.step) && Number.isFinite(p.loss) && (!logY || p.loss > 0);
  const points = series.flatMap((s) => s.points.filter(usable));
  const plot = { x0: MARGIN.left, x1: width - MARGIN.right, y0: height - MARGIN.bottom, y1: MARGIN.top };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (options.title)
    out.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(options.title)}</text>`,
    );
  const xLabel = `<text x="${(plot.x0 + plot.x1) / 2}" y="${height - 10}" text-anchor="middle">${escapeXml(options.xLabel ?? 'step')}</text>`;
  const yMid = (plot.y0 + plot.y1) / 2;
  const yLabel = `<text x="16" y="${yMid}" text-anchor="middle" transform="rotate(-90 16 ${yMid})">${escapeXml(options.yLabel ?? 'loss')}</text>`;
  out.push(xLabel, yLabel);
  if (points.length === 0) {
    out.push(
      `<text x="${(plot.x0 + plot.x1) / 2}" y="${yMid}" text-anchor="middle" fill="#888">no data</text>`,
      '</svg>',
    );
    return out.join('\n');
  }
  const xTicks = niceTicks(...extent(points, (p) => p.step));
  const ys = points.map((p) => (logY ? Math.log10(p.loss) : p.loss));
  const yTicks = logY ? logTicks(minOf(ys), maxOf(ys)) : niceTicks(minOf(ys), maxOf(ys));
  const [xMin, xMax] = [xTicks[0]!, xTicks.at(-1)!];
  const [yMin, yMax] = [yTicks[0]!, yTicks.at(-1)!];
  const sx = (x: number) => round2(plot.x0 + ((x - xMin) / (xMax - xMin)) * (plot.x1 - plot.x0));
  const sy = (y: number) => round2(plot.y0 - ((y - yMin) / (yMax - yMin)) * (plot.y0 - plot.y1));

  for (const t of xTicks) {
    const x = sx(t);
    out.push(`<line x1="${x}" y1="${plot.y1}" x2="${x}" y2="${plot.y0}" stroke="#eee"/>`);
    out.push(`<line x1="${x}" y1="${plot.y0}" x2="${x}" y2="${plot.y0 + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${plot.y0 + 18}" text-anchor="middle">${tickLabel(t, xTicks)}</text>`);
  }
  for (const t of yTicks) {
    const y = sy(t);
    const label = logY ? tickLabel(10 ** t, [10 ** t]) : tickLabel(t, yTicks);
    out.push(`<line x1="${plot.x0}" y1="${y}" x2="${plot.x1}" y2="${y}" stroke="#eee"/>`);
    out.push(`<line x1="${plot.x0 - 5}" y1="${y}" x2="${plot.x0}" y2="${y}" stroke="black"/>`);
    out.push(`<text x="${plot.x0 - 8}" y="${y + 4}" text-anchor="end">${label}</text>`);
  }
  out.push(`<path d="M${plot.x0} ${plot.y1}V${plot.y0}H${plot.x1}" fill="none" stroke="black"/>`);

  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    let d = '';
    let pen = false;
    for (const p of s.points) {
      if (!usable(p)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${sx(p.step)} ${sy(logY ? Math.log10(p.loss) : p.loss)}`;
      pen = true;
    }
    out.push(
      `<path class="series" data-name="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`,
    );
  });
  if (series.length > 1) {
    series.forEach((s, i) => {
      const y = plot.y1 + 8 + i * 16;
      const x = plot.x1 - 120;
      out.push(
        `<line x1="${x}" y1="${y}" x2="${x + 20}" y2="${y}" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`,
      );
      out.push(`<text x="${x + 26}" y="${y + 4}">${escapeXml(s.name)}</text>`);
    });
  }
  out.push('</svg>');
  return out.join('\n');
}

/** Ticks at multiples of 1, 2 or 5 x 10^k covering [min, max], about 5 of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    [min, max] = [min - pad, max + pad];
  }
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!;
  // The 1e-9 keeps 0.3 / 0.1 = 2.9999999999999996 from adding a tick below 0.3.
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  // Multiply from integers, so ticks are 0.3 rather than 0.30000000000000004.
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toFixed(decimals)));
}

/** Ticks in log10 units at whole decades, at least two. */
function logTicks(min: number, max: number): number[] {
  const first = Math.floor(min);
  const last = Math.max(Math.ceil(max), first + 1);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

function tickLabel(value: number, ticks: readonly number[]): string {
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(0).replace('e+', 'e');
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : abs || 1;
  const decimals = Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  return value.toFixed(decimals);
}

const round2 = (v: number) => Math.round(v * 100) / 100;

function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!,
  );
}

// Braille cells hold 2 x 4 dots; bit of the dot at (column, row) within a cell.
const DOT = [
  [0x01, 0x02, 0x04, 0x40],
  [0x08, 0x10, 0x20, 0x80],
];

/** `terminalChart`'s size, in characters. */
export interface TerminalChartOptions {
  /** Columns of the plot itself, not counting the axis labels (default 60). */
  width?: number;
  /** Rows (default 10). */
  height?: number;
}

/**
 * A line chart of `values` (one per step) in braille characters: each character holds 2 x 4 dots, so
 * the plot has width x 2 points across and height x 4 up. More values than points are averaged per
 * column; non-finite values leave a gap. The y axis is labelled with the maximum and minimum.
 */
export function terminalChart(values: readonly number[], options: TerminalChartOptions = {}): string {
  const width = Math.max(1, options.width ?? 60);
  const height = Math.max(1, options.height ?? 10);
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return '(no data)';
  const cols = Math.min(width * 2, values.length);
  const column = (c: number): number => {
    // Column c averages the values that fall in it (one value per column when there are few).
    const from = Math.floor((c * values.length) / cols);
    const to = Math.floor(((c + 1) * values.length) / cols);
    let [sum, n] = [0, 0];
    for (let i = from; i < to; i++) if (Number.isFinite(values[i]!)) [sum, n] = [sum + values[i]!, n + 1];
    return n > 0 ? sum / n : Number.NaN;
  };
  const ys = Array.from({ length: cols }, (_, c) => column(c));
  const [lo, hi] = [minOf(finite), maxOf(finite)];
  const rows = height * 4;
  const dotY = (v: number) =>
    hi === lo ? Math.floor((rows - 1) / 2) : Math.round(((v - lo) / (hi - lo)) * (rows - 1));
  // Spread the columns over the width when there are fewer values than dot columns.
  const dotX = (c: number) => (cols === 1 ? 0 : Math.round((c * (width * 2 - 1)) / (cols - 1)));
  const cells = Array.from({ length: height }, () => new Array<number>(width).fill(0));
  const plot = (x: number, y: number) => {
    const row = height - 1 - Math.floor(y / 4);
    cells[row]![Math.floor(x / 2)]! |= DOT[x % 2]![3 - (y % 4)]!;
  };
  let prev: [number, number] | null = null;
  ys.forEach((v, c) => {
    if (!Number.isFinite(v)) {
      prev = null;
      return;
    }
    const [x, y] = [dotX(c), dotY(v)];
    if (prev === null) plot(x, y);
    else line(prev, [x, y], plot);
    prev = [x, y];
  });
  const labels = [formatTick(hi), formatTick(lo)];
  const gutter = Math.max(...labels.map((l) => l.length));
  return cells
    .map((row, r) => {
      const label = r === 0 ? labels[0]! : r === height - 1 ? labels[1]! : '';
      return `${label.padStart(gutter)} ┤${String.fromCharCode(...row.map((bits) => 0x2800 + bits))}`;
    })
    .join('\n');
}

/** Bresenham's line from a to b, both ends included. */
function line(
  [x0, y0]: [number, number],
  [x1, y1]: [number, number],
  plot: (x: number, y: number) => void,
): void {
  const [dx, dy] = [Math.abs(x1 - x0), -Math.abs(y1 - y0)];
  const [stepX, stepY] = [x0 < x1 ? 1 : -1, y0 < y1 ? 1 : -1];
  let err = dx + dy;
  for (;;) {
    plot(x0, y0);
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) [err, x0] = [err + dy, x0 + stepX];
    if (e2 <= dx) [err, y0] = [err + dx, y0 + stepY];
  }
}

function formatTick(v: number): string {
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
