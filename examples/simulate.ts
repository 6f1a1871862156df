// What-if sweeps far beyond this machine: the bubble of each pipeline schedule for 4 to 32 pipeline
// workers and 1 to 64 microbatches, simulated with the runtime's own host logic under a virtual clock
// (equal stage costs: forward 1, backward 2, or input 1 + weight 1 for ZB-H1; free messages). Prints
// a table per schedule and writes a line plot (one panel per schedule, one line per worker count)
// to out/simulate/bubbles.svg.
//
// Then the question a user asks: which schedule, how many microbatches and chunks for my model on 8
// workers under a memory limit? One step of an MLP is measured for real (in process, traced),
// `stepCosts` turns its trace into the whole model's costs, and `searchSchedule` simulates every
// candidate with them: the ranked table, and the best one's timeline in out/simulate/search-best.svg.
//
//   npx tsx examples/simulate.ts [--quick] [--out out/simulate]
//
// --quick sweeps 4 and 8 workers up to 16 microbatches and measures a narrower MLP: a check that the
// example runs (test/examples/simulate.test.ts), not its figures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  createRuntime,
  formatBytes,
  formatSearch,
  initParams,
  mlpClassifier,
  Rng,
  ScheduleError,
  type ScheduleKind,
  searchSchedule,
  simulatePipeline,
  stepCosts,
  type Trace,
  tensor,
  timelineSvg,
} from 'backflow-runtime';

const SCHEDULES: readonly { kind: ScheduleKind; chunks: number; label: string }[] = [
  { kind: 'gpipe', chunks: 1, label: 'GPipe' },
  { kind: '1f1b', chunks: 1, label: '1F1B' },
  { kind: 'interleaved-1f1b', chunks: 2, label: 'interleaved 1F1B, 2 chunks' },
  { kind: 'zb-h1', chunks: 1, label: 'ZB-H1' },
];
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join('out', 'simulate') },
  },
});
const quick = values.quick;
const WORKERS = quick ? [4, 8] : [4, 8, 16, 32];
const MAX_MICROBATCHES = quick ? 16 : 64;
const SHOWN = [1, 2, 4, 8, 16, 32, 64].filter((m) => m <= MAX_MICROBATCHES);

interface Point {
  m: number;
  idle: number;
  relative: number;
  inFlight: number;
}

/** The bubble of one configuration, or null when the schedule's rules refuse it (e.g. 1F1B with m < p). */
function bubble(kind: ScheduleKind, chunks: number, p: number, m: number): Point | null {
  const costs =
    kind === 'zb-h1' ? { forward: 1, backward: 2, input: 1, weight: 1 } : { forward: 1, backward: 2 };
  try {
    const r = simulatePipeline({ schedule: kind, workers: p, microbatches: m, chunks, costs, record: false });
    return { m, idle: r.idleFraction, relative: r.bubbleVsIdeal, inFlight: r.peakInFlight[0]! };
  } catch (err) {
    if (err instanceof ScheduleError) return null;
    throw err;
  }
}

const started = performance.now();
const results = SCHEDULES.map((s) => ({
  ...s,
  lines: WORKERS.map((p) => ({
    p,
    points: Array.from({ length: MAX_MICROBATCHES }, (_, i) => bubble(s.kind, s.chunks, p, i + 1)).filter(
      (x): x is Point => x !== null,
    ),
  })),
}));
const seconds = (performance.now() - started) / 1000;

console.log('Bubble = idle fraction of the step, 1 - busy / (workers x step); "-": the schedule refuses it');
console.log('(1F1B and ZB-H1 need microbatches >= workers, interleaved a multiple of the workers).\n');
for (const s of results) {
  console.log(`${s.label}`);
  console.log(`  workers \\ microbatches ${SHOWN.map((m) => String(m).padStart(6)).join('')}`);
  for (const line of s.lines) {
    const cells = SHOWN.map((m) => line.points.find((q) => q.m === m)?.idle.toFixed(3) ?? '-');
    console.log(`  ${String(line.p).padEnd(22)} ${cells.map((c) => c.padStart(6)).join('')}`);
  }
  console.log();
}

// The closed form the simulator must reproduce: GPipe and 1F1B idle (p-1)/(m+p-1).
let worst = 0;
for (const s of results.filter((r) => r.kind === 'gpipe' || r.kind === '1f1b')) {
  for (const { p, points } of s.lines) {
    for (const q of points) worst = Math.max(worst, Math.abs(q.idle - (p - 1) / (q.m + p - 1)));
  }
}
console.log(
  `GPipe and 1F1B against the closed form (p-1)/(m+p-1): largest difference ${worst.toExponential(1)}`,
);

// What 1F1B buys over GPipe: activations kept on the first worker, in microbatches.
const p8 = (kind: ScheduleKind) => results.find((r) => r.kind === kind)!.lines.find((l) => l.p === 8)!;
const at = (kind: ScheduleKind, m: number) => p8(kind).points.find((q) => q.m === m)?.inFlight ?? '-';
console.log(
  `Peak microbatches in flight on worker 0 with 8 workers, m = 8 / 32 / 64: GPipe ${at('gpipe', 8)} / ${at('gpipe', 32)} / ${at('gpipe', 64)}, ` +
    `1F1B ${at('1f1b', 8)} / ${at('1f1b', 32)} / ${at('1f1b', 64)}, ZB-H1 ${at('zb-h1', 8)} / ${at('zb-h1', 32)} / ${at('zb-h1', 64)}`,
);

const outDir = values.out;
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'bubbles.svg');
writeFileSync(file, bubblePlot(results));
console.log(
  `\n${results.reduce((n, s) => n + s.lines.reduce((k, l) => k + l.points.length, 0), 0)} simulated steps in ${seconds.toFixed(1)} s; plot written to ${file}`,
);

// Which schedule for a model? Measure its step, then search. An MLP 512 wide, 8 tanh layers and a
// 10-class head, batch 512 (width and batch 64 with --quick), run in process on 2 pipeline workers (GPipe, 2
// microbatches, so that the trace sees a stage boundary): in process the hosts take turns on one
// thread, so a span is the task's own time. The totals of the measured steps are the whole model's
// costs on the batch (Note [search costs]); the search shares them out over every candidate's
// stages and microbatches.
const width = quick ? 64 : 512;
const mlp = mlpClassifier({
  features: width,
  hidden: new Array<number>(8).fill(width),
  classes: 10,
  activation: 'tanh',
});
const rng = new Rng(3);
const batch = quick ? 64 : 512;
const feeds = {
  x: rng.normalTensor([batch, width]),
  y: tensor(Array.from({ length: batch }, () => rng.int(10))),
};
const runtime = await createRuntime(mlp, {
  mode: 'in-process',
  workers: 2,
  schedule: 'gpipe',
  microbatches: 2,
  params: initParams(mlp, 1),
  trace: true,
});
const traces: Trace[] = [];
try {
  for (let i = 0; i < 6; i++) {
    const out = await runtime.step(feeds);
    if (i >= 2) traces.push(out.trace!); // after two warm-up steps
  }
} finally {
  await runtime.close();
}
const measured = stepCosts(traces);
// A task costs a little whatever its size (dispatch, messages): assumed here, not measured.
const costs = { ...measured, overheadMs: 0.05 };
// The limit: a tenth of what the whole step keeps, per worker (GPipe keeps an eighth on 8 workers).
const memoryLimit = Math.floor(measured.keptBytes / 10);
console.log(
  `\nThe MLP's step, measured (${traces.length} steps in process): forward ${measured.forward.toFixed(1)} ms, ` +
    `backward ${measured.backward.toFixed(1)} ms, ${formatBytes(measured.keptBytes)} kept for backwards, ` +
    `${formatBytes(measured.activationBytes ?? 0)} across a stage boundary. Its schedule on 8 workers, ` +
    `each keeping at most ${formatBytes(memoryLimit)}, with ${costs.overheadMs} ms per task:\n`,
);
const found = searchSchedule({
  workers: 8,
  costs,
  memoryLimit,
  microbatches: [8, 16, 32, 64],
  chunks: [1, 2],
});
console.log(formatSearch(found));
if (found.best !== null && found.bestTrace !== null) {
  const best = join(outDir, 'search-best.svg');
  const { schedule, microbatches, chunks } = found.best;
  writeFileSync(
    best,
    timelineSvg(found.bestTrace, {
      title: `${schedule}, p=8, m=${microbatches}, chunks=${chunks}: the search's best (simulated)`,
    }),
  );
  console.log(`timeline of the best written to ${best}`);
}

/** Panels side by side, one per schedule: bubble against microbatches (log2 axis), a line per worker count. */
function bubblePlot(data: typeof results): string {
  const panel = { w: 300, h: 240, left: 44, top: 40, right: 12, bottom: 40 };
  const colors = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759'];
  const width = data.length * panel.w;
  const height = panel.h + 40;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  const plotW = panel.w - panel.left - panel.right;
  const plotH = panel.h - panel.top - panel.bottom;
  const xOf = (m: number) => (Math.log2(m) / Math.log2(MAX_MICROBATCHES)) * plotW;
  const yOf = (b: number) => plotH - b * plotH;
  data.forEach((s, i) => {
    const x0 = i * panel.w + panel.left;
    const y0 = panel.top;
    out.push(`<g transform="translate(${x0},${y0})">`);
    out.push(`<text x="${plotW / 2}" y="-18" text-anchor="middle" font-size="13">${s.label}</text>`);
    out.push(`<rect width="${plotW}" height="${plotH}" fill="#f8f8f8" stroke="#ccc"/>`);
    for (const b of [0, 0.25, 0.5, 0.75, 1]) {
      out.push(`<line x1="0" x2="${plotW}" y1="${yOf(b)}" y2="${yOf(b)}" stroke="#e0e0e0"/>`);
      out.push(`<text x="-6" y="${yOf(b) + 4}" text-anchor="end">${b}</text>`);
    }
    for (const m of SHOWN) {
      out.push(`<text x="${xOf(m).toFixed(1)}" y="${plotH + 14}" text-anchor="middle">${m}</text>`);
    }
    out.push(`<text x="${plotW / 2}" y="${plotH + 30}" text-anchor="middle">microbatches</text>`);
    s.lines.forEach((line, k) => {
      if (line.points.length === 0) return;
      const d = line.points.map(
        (q, j) => `${j === 0 ? 'M' : 'L'}${xOf(q.m).toFixed(1)},${yOf(q.idle).toFixed(1)}`,
      );
      out.push(`<path d="${d.join(' ')}" fill="none" stroke="${colors[k]}" stroke-width="1.8"/>`);
    });
    out.push('</g>');
  });
  // One legend for every panel, and the y axis label.
  WORKERS.forEach((p, k) => {
    const x = 60 + k * 110;
    out.push(
      `<line x1="${x}" x2="${x + 22}" y1="${height - 14}" y2="${height - 14}" stroke="${colors[k]}" stroke-width="2.5"/>`,
    );
    out.push(`<text x="${x + 28}" y="${height - 10}">${p} workers</text>`);
  });
  out.push(
    `<text x="${60 + WORKERS.length * 110 + 20}" y="${height - 10}" fill="#555">bubble: idle fraction of the step</text>`,
  );
  out.push('</svg>');
  return out.join('\n');
}
