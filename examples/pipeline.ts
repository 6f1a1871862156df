// A 4-stage MLP pipeline on 4 worker threads, 8 microbatches, under each schedule in turn: GPipe,
// 1F1B, interleaved 1F1B (2 model chunks per worker, so 8 stages) and ZB-H1 (the backward split
// into input and weight gradients). For each it prints the measured step time, the bubble measured
// in the real trace next to the simulator's (fed with the costs measured in this very run), the
// peak activation memory per worker, and checks the gradients against the reference engine bit for
// bit. Chrome traces (open them in https://ui.perfetto.dev or chrome://tracing) and SVG timelines
// of the real and the simulated step go to out/pipeline/.
//
//   npx tsx examples/pipeline.ts [--width 768] [--batch 512] [--steps 4]
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  bitwiseEqual,
  closedFormIdleFraction,
  createRuntime,
  generateSchedule,
  hostActions,
  initParams,
  mlpClassifier,
  Rng,
  referenceStep,
  replayTraces,
  type ScheduleKind,
  type Trace,
  tensor,
  timelineSvg,
  toChromeTrace,
  traceStats,
} from 'backflow-runtime';

const { values } = parseArgs({
  options: {
    width: { type: 'string', default: '768' },
    batch: { type: 'string', default: '512' },
    steps: { type: 'string', default: '4' },
  },
});
const width = Number(values.width);
const batch = Number(values.batch);
const steps = Number(values.steps);
const workers = 4;
const microbatches = 8;
const layers = 8;
const cores = Math.min(workers, availableParallelism());
const outDir = join('out', 'pipeline');
mkdirSync(outDir, { recursive: true });

// x [B, width] -> 8 tanh layers of `width` -> 10 logits -> cross-entropy. The runtime cuts it into
// stages of about equal FLOPs (2 layers each; 1 each with 8 stages).
const graph = mlpClassifier({
  features: width,
  hidden: new Array<number>(layers).fill(width),
  classes: 10,
  activation: 'tanh',
});
const params = initParams(graph, 1);
const rng = new Rng(2);
const feeds = {
  x: rng.normalTensor([batch, width]),
  y: tensor(Array.from({ length: batch }, () => rng.int(10))),
};
const reference = referenceStep(graph, feeds, params, { microbatches });

console.log(
  `MLP ${width}x${layers} + 10-class head, batch ${batch} in ${microbatches} microbatches of ${batch / microbatches}, ` +
    `${workers} worker threads on ${availableParallelism()} cores; ${steps} timed steps after 2 warm-up steps per schedule\n`,
);

const median = (xs: readonly number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(0)}`;
const rows: string[][] = [];
const SCHEDULES: readonly (readonly [ScheduleKind, number])[] = [
  ['gpipe', 1],
  ['1f1b', 1],
  ['interleaved-1f1b', 2],
  ['zb-h1', 1],
];

for (const [schedule, chunks] of SCHEDULES) {
  const runtime = await createRuntime(graph, {
    workers,
    microbatches,
    schedule,
    chunks,
    params,
    trace: true,
  });
  const stepMs: number[] = [];
  const traces: Trace[] = [];
  let exact = true;
  let peaks: number[] = [];
  try {
    for (let i = 0; i < 2 + steps; i++) {
      const out = await runtime.step(feeds);
      exact &&= out.loss === reference.loss;
      for (const [name, g] of Object.entries(reference.grads)) exact &&= bitwiseEqual(out.grads[name]!, g);
      if (i < 2) continue;
      stepMs.push(out.timings.stepMs);
      traces.push(out.trace!);
    }
    // Each host's peak of bytes kept for backwards during the last step.
    peaks = (await runtime.stats()).map((h) => h.peakKeptBytes);
  } finally {
    await runtime.close();
  }

  // The simulator, fed with the costs of a measured step: each (node, phase)'s core time (the spans
  // are wall time shared by 4 workers on 2 cores: Note [contended spans]) and the messages' latency.
  // Each step is predicted from its own trace (the load of other processes changes from step to
  // step); the schedule's own bubble, with a core per worker, from all of them.
  const actions = hostActions(runtime.plan, generateSchedule(schedule, { workers, microbatches, chunks }));
  const replay = { microbatches, batchSize: batch, schedule: actions, measuredCores: cores };
  const perStep = traces.map((t) => replayTraces(runtime.plan, [t], replay));
  const errors = perStep.map((r, i) => (r.makespan - stepMs[i]!) / stepMs[i]!);
  const lastSim = perStep[perStep.length - 1]!;
  const ownCores = replayTraces(runtime.plan, traces, { ...replay, cores: workers });

  const last = traces[traces.length - 1]!;
  const base = join(outDir, schedule);
  writeFileSync(`${base}.trace.json`, JSON.stringify(toChromeTrace(last)));
  writeFileSync(
    `${base}.svg`,
    timelineSvg(last, { title: `${schedule}: measured step, ${workers} workers on ${cores} cores` }),
  );
  writeFileSync(
    `${base}.sim.svg`,
    timelineSvg(ownCores.trace, {
      title: `${schedule}: simulated with the measured costs, a core per worker`,
    }),
  );
  writeFileSync(
    `${base}.sim-${cores}-cores.svg`,
    timelineSvg(lastSim.trace, {
      title: `${schedule}: the last step simulated with its costs on ${cores} cores`,
    }),
  );

  const measured = median(stepMs);
  rows.push([
    schedule,
    `${measured.toFixed(0)} (${Math.min(...stepMs).toFixed(0)}-${Math.max(...stepMs).toFixed(0)})`,
    `${median(perStep.map((r) => r.makespan)).toFixed(0)} (${signed(100 * median(errors))}%)`,
    median(traces.map((t) => traceStats(t).idleFraction)).toFixed(3),
    ownCores.idleFraction.toFixed(3),
    closedFormIdleFraction(schedule, workers, microbatches, chunks).toFixed(3),
    peaks.map(mib).join(' / '),
    ownCores.peakKeptBytes.map(mib).join(' / '),
    exact ? 'bitwise equal' : 'DIFFERENT',
  ]);
  if (!exact) process.exitCode = 1;
}

const header = [
  'schedule',
  'step ms (min-max)',
  `simulated ms (${cores} cores, error)`,
  'bubble real',
  'bubble sim',
  'closed form',
  'peak kept MiB per worker',
  'simulated',
  'gradients vs reference',
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
console.log(`
bubble = idle fraction of the step, 1 - busy / (workers x step). Real: from the measured trace (a
worker waiting for a core counts as busy). Sim: the simulator with this run's costs and a core per
worker, the schedule's own bubble. Simulated ms: each step simulated on the ${cores} cores there are
with the costs measured in it (median, and the median relative error). Closed form: equal stages
and free messages. Peak kept: activations held for backwards (host counters).

Written to ${outDir}/: <schedule>.trace.json (Chrome trace of the last measured step; open it in
https://ui.perfetto.dev or chrome://tracing), <schedule>.svg (its timeline), <schedule>.sim.svg and
<schedule>.sim-${cores}-cores.svg (the simulated step, with a core per worker and on ${cores} cores).`);
