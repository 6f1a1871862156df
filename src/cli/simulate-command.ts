// `backflow simulate` and `backflow inspect`: a pipeline schedule simulated, and a graph, a plan or a
// schedule grid printed.
import { writeFileSync } from 'node:fs';
import { printGraph } from '../graph/print.ts';
import { PLACEMENT_STRATEGIES } from '../partition/placement.ts';
import { compile } from '../partition/plan.ts';
import { printPlan } from '../partition/print.ts';
import { checkPipelineConfig, SCHEDULE_KINDS, type ScheduleKind } from '../schedule/config.ts';
import { generateSchedule } from '../schedule/generators.ts';
import { formatGrid } from '../schedule/grid.ts';
import { simulatePipeline } from '../sim/pipeline.ts';
import { toChromeTrace } from '../trace/chrome.ts';
import { timelineSvg } from '../trace/svg.ts';
import { choice, int, num, type Spec, type Values } from './main.ts';
import { MODELS } from './models.ts';

export const SIMULATE: Spec = {
  stages: { type: 'string', default: '4', help: 'pipeline workers (p)' },
  microbatches: { type: 'string', default: '8', help: 'microbatches per step (m)' },
  schedule: { type: 'string', default: '1f1b', help: SCHEDULE_KINDS.join(' | ') },
  chunks: { type: 'string', default: '1', help: 'model chunks per worker (interleaved)' },
  forward: { type: 'string', default: '1', help: 'forward time of one stage for one microbatch (ms)' },
  backward: { type: 'string', default: '2', help: 'backward time of one stage for one microbatch (ms)' },
  latency: { type: 'string', default: '0', help: 'per-message latency (ms)' },
  cores: { type: 'string', help: 'cores the workers share (default: one each)' },
  svg: { type: 'string', help: 'write the timeline as SVG to this file' },
  trace: { type: 'string', help: 'write a Chrome trace (Perfetto) to this file' },
};

export const INSPECT: Spec = {
  what: { type: 'string', default: 'graph', help: 'graph | plan | schedule' },
  model: { type: 'string', default: 'mnist', help: 'mnist | spirals (the MLP the train command uses)' },
  workers: { type: 'string', default: '2', help: 'for plan: workers' },
  placement: { type: 'string', default: 'stages', help: `for plan: ${PLACEMENT_STRATEGIES.join(' | ')}` },
  schedule: { type: 'string', default: '1f1b', help: `for schedule: ${SCHEDULE_KINDS.join(' | ')}` },
  stages: { type: 'string', default: '4', help: 'for schedule: pipeline workers' },
  microbatches: { type: 'string', default: '8', help: 'for schedule: microbatches' },
  chunks: { type: 'string', default: '1', help: 'for schedule: chunks per worker' },
};

export async function simulate(v: Values): Promise<void> {
  const schedule = choice(v, 'schedule', SCHEDULE_KINDS);
  const p = int(v, 'stages');
  const m = int(v, 'microbatches');
  const chunks = int(v, 'chunks');
  const r = simulatePipeline({
    schedule,
    workers: p,
    microbatches: m,
    chunks,
    costs: {
      forward: num(v, 'forward', true),
      backward: num(v, 'backward', true),
      latencyMs: num(v, 'latency'),
    },
    ...(v['cores'] !== undefined ? { cores: int(v, 'cores') } : {}),
  });
  console.log(`${schedule}: p=${p} workers, m=${m} microbatches, ${r.stages} stages`);
  console.log(`  step time        ${r.makespan.toFixed(3)} ms`);
  console.log(
    `  bubble           ${(r.idleFraction * 100).toFixed(2)}% of the step idle; ${(r.bubbleVsIdeal * 100).toFixed(2)}% over the ideal time`,
  );
  console.log(
    `  peak in flight   ${r.peakInFlight.map((s) => Math.max(0, ...s)).join(' ')} microbatches per worker`,
  );
  console.log(
    `  peak activations ${r.peakKeptBytes.map((b) => `${(b / 1024).toFixed(1)}K`).join(' ')} per worker`,
  );
  if (typeof v['svg'] === 'string') {
    writeFileSync(v['svg'], timelineSvg(r.trace, { title: `${schedule}, p=${p}, m=${m} (simulated)` }));
    console.log(`timeline written to ${v['svg']}`);
  }
  if (typeof v['trace'] === 'string') {
    writeFileSync(v['trace'], JSON.stringify(toChromeTrace(r.trace)));
    console.log(`Chrome trace written to ${v['trace']}`);
  }
}

export async function inspect(v: Values): Promise<void> {
  const what = choice(v, 'what', ['graph', 'plan', 'schedule'] as const);
  const graph = MODELS[choice(v, 'model', ['mnist', 'spirals'] as const)].graph();
  if (what === 'graph') console.log(printGraph(graph));
  else if (what === 'plan')
    console.log(
      printPlan(
        compile(graph, {
          workers: int(v, 'workers'),
          placement: choice(v, 'placement', PLACEMENT_STRATEGIES),
        }),
      ),
    );
  else {
    const kind: ScheduleKind = choice(v, 'schedule', SCHEDULE_KINDS);
    const config = {
      workers: int(v, 'stages'),
      microbatches: int(v, 'microbatches'),
      chunks: int(v, 'chunks'),
    };
    checkPipelineConfig(kind, config);
    console.log(formatGrid(generateSchedule(kind, config)));
  }
}
