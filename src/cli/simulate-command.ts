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
import { linkParams } from '../sim/cost.ts';
import { simulatePipeline } from '../sim/pipeline.ts';
import { TRANSPORT_KINDS, type TransportKind, type TransportParams } from '../sim/transport.ts';
import { toChromeTrace } from '../trace/chrome.ts';
import { timelineSvg } from '../trace/svg.ts';
import { choice, int, num, type Spec, UsageError, type Values } from './main.ts';
import { MODELS } from './models.ts';

export const SIMULATE: Spec = {
  stages: { type: 'string', help: 'pipeline workers (p), one stage each unless --chunks (default 4)' },
  workers: { type: 'string', help: 'the same as --stages' },
  microbatches: { type: 'string', default: '8', help: 'microbatches per step (m)' },
  schedule: { type: 'string', default: '1f1b', help: SCHEDULE_KINDS.join(' | ') },
  chunks: { type: 'string', default: '1', help: 'model chunks per worker (interleaved)' },
  forward: { type: 'string', default: '1', help: 'forward time of one stage for one microbatch (ms)' },
  backward: { type: 'string', default: '2', help: 'backward time of one stage for one microbatch (ms)' },
  transport: {
    type: 'string',
    default: 'threads',
    help: `the wire between workers: ${TRANSPORT_KINDS.join(' | ')} (as train's --data-path)`,
  },
  'activation-bytes': {
    type: 'string',
    default: '64',
    help: 'bytes of one microbatch crossing a stage boundary, e.g. 4096, 256KiB, 1MiB',
  },
  latency: { type: 'string', help: "per-message latency of one hop (ms; default: the transport's)" },
  bandwidth: { type: 'string', help: "MB/s of one link, or of the NATS broker (default: the transport's)" },
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
  const p = pipelineWorkers(v);
  const m = int(v, 'microbatches');
  const chunks = int(v, 'chunks');
  const transport = choice(v, 'transport', TRANSPORT_KINDS);
  const activationBytes = byteSize(v, 'activation-bytes');
  const link = {
    transport,
    ...(v['latency'] !== undefined ? { latencyMs: num(v, 'latency') } : {}),
    ...(v['bandwidth'] !== undefined ? { bytesPerMs: num(v, 'bandwidth', true) * 1e3 } : {}),
  };
  const options = {
    schedule,
    workers: p,
    microbatches: m,
    chunks,
    activationBytes,
    ...(v['cores'] !== undefined ? { cores: int(v, 'cores') } : {}),
  };
  const compute = { forward: num(v, 'forward', true), backward: num(v, 'backward', true) };
  const r = simulatePipeline({ ...options, costs: { ...compute, ...link } });
  // The same step with free communication: what the wire adds to the step.
  const free = simulatePipeline({ ...options, costs: compute, record: false }).makespan;
  const { params } = linkParams(link);
  console.log(`${schedule}: p=${p} workers, m=${m} microbatches, ${r.stages} stages`);
  console.log(`  transport        ${describeTransport(transport, params)}`);
  console.log(`  step time        ${r.makespan.toFixed(3)} ms`);
  console.log(
    `  bubble           ${(r.idleFraction * 100).toFixed(2)}% of the step idle; ${(r.bubbleVsIdeal * 100).toFixed(2)}% over the ideal time`,
  );
  const w = r.wire;
  const each = (ms: number) => (w.messages === 0 ? 0 : ms / w.messages);
  console.log(
    w.messages === 0
      ? '  on the wire      no messages'
      : `  on the wire      ${w.messages} messages of ${bytes(Math.round(each(w.bytes)))}: ${each(w.totalMs).toFixed(3)} ms each from send to receipt, ${each(w.queuedMs).toFixed(3)} ms of it queued`,
  );
  console.log(
    `  cost of the wire +${(r.makespan - free).toFixed(3)} ms (${(((r.makespan - free) / r.makespan) * 100).toFixed(2)}% of the step) over the same step with free communication, ${free.toFixed(3)} ms`,
  );
  if (w.busiest !== null)
    console.log(
      `  busiest          ${w.busiest.resource}, busy ${((w.busiest.busyMs / r.makespan) * 100).toFixed(2)}% of the step`,
    );
  console.log(`  peak in flight   ${perWorker(r.peakInFlight.map(String), 'microbatches')}`);
  console.log(`  peak activations ${perWorker(r.peakKeptBytes.map(bytes), 'kept')}`);
  if (typeof v['svg'] === 'string') {
    writeFileSync(v['svg'], timelineSvg(r.trace, { title: `${schedule}, p=${p}, m=${m} (simulated)` }));
    console.log(`timeline written to ${v['svg']}`);
  }
  if (typeof v['trace'] === 'string') {
    writeFileSync(v['trace'], JSON.stringify(toChromeTrace(r.trace)));
    console.log(`Chrome trace written to ${v['trace']}`);
  }
}

/** p, from --workers or --stages (the same flag under two names). */
function pipelineWorkers(v: Values): number {
  const given = (['workers', 'stages'] as const).filter((k) => v[k] !== undefined);
  const [a, b] = given.map((k) => int(v, k));
  if (a !== undefined && b !== undefined && a !== b)
    throw new UsageError(`--workers and --stages are the same flag: found ${a} and ${b}`);
  return a ?? 4;
}

const UNITS: Record<string, number> = { '': 1, B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };

/** A size in bytes: an integer, optionally with a unit (B, KiB, MiB, GiB). */
function byteSize(v: Values, key: string): number {
  const raw = v[key];
  const match = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(raw) : null;
  const n = match === null || !(match[2]! in UNITS) ? Number.NaN : Number(match[1]) * UNITS[match[2]!]!;
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(
      `--${key}: expected a whole number of bytes >= 1, optionally with B, KiB, MiB or GiB, found '${String(raw)}'`,
    );
  return n;
}

/** One figure per worker; the first and last few of a long pipeline. */
function perWorker(figures: string[], what: string): string {
  const n = figures.length;
  if (n <= 16) return `${figures.join(' ')} ${what} per worker`;
  return `${figures.slice(0, 4).join(' ')} ... ${figures.slice(-4).join(' ')} ${what} on workers 0-3 ... ${n - 4}-${n - 1}`;
}

function bytes(n: number): string {
  if (n < 2 ** 10) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

function describeTransport(kind: TransportKind, p: TransportParams): string {
  const bandwidth = Number.isFinite(p.mbPerS) ? `${p.mbPerS} MB/s` : 'no bandwidth limit';
  if (kind === 'threads') return `threads (in-process ports): ${p.latencyMs} ms per message, ${bandwidth}`;
  if (kind === 'tcp')
    return `tcp (a direct link per pair of workers): ${p.latencyMs} ms per message, ${bandwidth} per link`;
  return `nats (every chunk through one broker): ${p.latencyMs} ms per hop (two per message), ${bandwidth} shared by every link, ${p.perChunkMs * 1e3} µs per chunk of up to ${p.chunkBytes} bytes`;
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
