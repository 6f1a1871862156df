import { extent } from '../util/extent.ts';
import { coalesce, type SpanPhase, type Trace } from './trace.ts';

const COLORS: Record<SpanPhase, string> = { F: '#4e79a7', B: '#59a14f', I: '#f28e2b', W: '#b07aa1' };
const NAMES: Record<SpanPhase, string> = { F: 'forward', B: 'backward', I: 'input grad', W: 'weight grad' };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A timeline of a trace as SVG: one lane per worker, a block per (phase, stage, microbatch) coloured
 * by phase, the microbatch number on blocks wide enough to hold it, and a time axis. Real and
 * simulated traces draw the same way.
 */
export function timelineSvg(
  trace: Trace,
  options: { title?: string; width?: number; laneHeight?: number } = {},
): string {
  const width = options.width ?? 1000;
  const lane = options.laneHeight ?? 28;
  const left = 80;
  const top = options.title ? 34 : 12;
  const spans = coalesce(trace.spans);
  const t0 = Math.min(extent(spans, (s) => s.start)[0], 0);
  const t1 = Math.max(extent(spans, (s) => s.end)[1], t0 + 1e-9);
  const scale = (width - left - 20) / (t1 - t0);
  const height = top + trace.workers * (lane + 6) + 60;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(options.title ?? 'backflow timeline')}</title>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (options.title)
    out.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${esc(options.title)}</text>`,
    );
  for (let w = 0; w < trace.workers; w++) {
    const y = top + w * (lane + 6);
    out.push(`<text x="${left - 8}" y="${y + lane / 2 + 4}" text-anchor="end">worker ${w}</text>`);
    out.push(`<rect x="${left}" y="${y}" width="${width - left - 20}" height="${lane}" fill="#f4f4f4"/>`);
  }
  for (const s of spans) {
    const x = left + (s.start - t0) * scale;
    const w = Math.max(0.5, (s.end - s.start) * scale);
    const y = top + s.worker * (lane + 6);
    out.push(
      `<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${lane}" fill="${COLORS[s.phase]}" stroke="white" stroke-width="0.5"><title>${NAMES[s.phase]} stage ${s.stage} microbatch ${s.mb}: ${s.start.toFixed(3)}-${s.end.toFixed(3)} ms</title></rect>`,
    );
    const label = String(s.mb);
    if (w > label.length * 7 + 2)
      out.push(
        `<text x="${(x + w / 2).toFixed(2)}" y="${y + lane / 2 + 4}" text-anchor="middle" fill="white">${label}</text>`,
      );
  }
  const axisY = top + trace.workers * (lane + 6) + 8;
  out.push(`<line x1="${left}" y1="${axisY}" x2="${width - 20}" y2="${axisY}" stroke="#333"/>`);
  for (let i = 0; i <= 5; i++) {
    const t = t0 + ((t1 - t0) * i) / 5;
    const x = left + (t - t0) * scale;
    out.push(
      `<line x1="${x.toFixed(2)}" y1="${axisY}" x2="${x.toFixed(2)}" y2="${axisY + 4}" stroke="#333"/>`,
    );
    out.push(
      `<text x="${x.toFixed(2)}" y="${axisY + 16}" text-anchor="middle">${t.toFixed(t1 - t0 < 10 ? 2 : 0)} ms</text>`,
    );
  }
  let lx = left;
  for (const phase of ['F', 'B', 'I', 'W'] as SpanPhase[]) {
    if (!spans.some((s) => s.phase === phase)) continue;
    out.push(
      `<rect x="${lx}" y="${axisY + 28}" width="12" height="12" fill="${COLORS[phase]}"/><text x="${lx + 16}" y="${axisY + 38}">${NAMES[phase]}</text>`,
    );
    lx += 100;
  }
  out.push('</svg>');
  return out.join('\n');
}
