/**
 * `npm run bench -- train --projection`: what the `scaling-2-workers-data-parallel` ratio would be on
 * more cores, according to the simulator (Note [projected data-parallel step], src/sim/data-parallel.ts).
 *
 * Each round measures, in this process, one after the other:
 *
 * 1. the `scaling` cases (1 worker, then 2 workers data-parallel, each alone, untraced): the measured
 *    step of 1 and 2 workers;
 * 2. the calibration: 1 worker with `trace: true` on shards of 128, 64, 32 and 16 rows, each alone;
 *    the median time of every (node, phase) at each shard size is a cost model (`traceCosts`), the
 *    lowest decile of the thread hop from the coordinator's post of a start to the worker's taking
 *    it (the trace's step marks) is the link latency of every message between hosts, and a copy and
 *    a sum of the first weight (200,704 floats), timed in this thread, give the owner's per-byte
 *    chores: copying a value for each other replica, summing each contribution (Note [message
 *    chores], src/sim/simulate.ts);
 * 3. 2 workers data-parallel with `trace: true`, for the check: its tasks' busy time per worker and
 *    its hosts' hop, against what the calibration assumed.
 *
 * The fixed part of a step (what it pays outside the hosts' tasks: the coordinator, the hops to and
 * from it, the gaps between a host's tasks) is the measured 1-worker step less the simulated
 * 1-worker step of the same costs, and is added as it is for every N. Then it simulates the step on
 * N = 1, 2, 4, 8 workers, one replica and one core each, sharded parameters (the runtime's default):
 * `projected-scaling` at the global batch 128 (shards of 128 / N rows), `projected-weak-scaling` at
 * 128 rows per worker (ratios in samples/s). Lines: median over rounds (min-max) of the projected
 * step, `ratio_vs_1_worker` over the projected 1-worker step; the 2-worker line carries the measured
 * step and ratio of the same rounds and the model's error, and `step_ms_if_error_grows` adds the
 * 2-worker error once per worker past the first (the owner's sums and copies that the simulator
 * does not charge grow with the replicas): a pessimistic figure next to the optimistic one.
 */
import { loadavg } from 'node:os';
import { MNIST_CLASSES, MNIST_PIXELS } from '../../src/data/mnist.ts';
import { initParams } from '../../src/graph/params.ts';
import { EagerOps } from '../../src/ops/eager.ts';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { type CostModel, traceCosts } from '../../src/sim/cost.ts';
import { projectDataParallel } from '../../src/sim/data-parallel.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { linkLatency, mergeTraces } from '../../src/trace/calibrate.ts';
import type { Trace } from '../../src/trace/trace.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { type BenchContext, median, round } from './harness.ts';
import { BATCH, HIDDEN, LR, mnistBatches, scaling } from './suites/train.ts';

const SHARDS = [128, 64, 32, 16] as const;
const WORKERS = [1, 2, 4, 8] as const;
const ROUNDS = 3;
const WARMUP = 50;
const TRACED = 200;

const graph = () => mlpClassifier({ features: MNIST_PIXELS, hidden: HIDDEN, classes: MNIST_CLASSES });

/** `steps` traced steps (after untraced-like warm-up ones) of the MLP with SGD on these options. */
async function traced(
  options: Omit<RuntimeOptions, 'optimizer' | 'params' | 'trace'>,
  rows: number,
  steps: number,
): Promise<Trace[]> {
  const g = graph();
  const runtime = await createRuntime(g, {
    ...options,
    trace: true,
    params: initParams(g, 1),
    optimizer: { name: 'sgd', lr: LR },
  });
  try {
    const batches = mnistBatches(16, rows);
    const traces: Trace[] = [];
    for (let i = 0; i < WARMUP + steps; i++) {
      const b = batches[i % batches.length]!;
      const r = await runtime.step({ x: b.x, y: b.y });
      if (i >= WARMUP) traces.push(r.trace!);
    }
    return traces;
  } finally {
    await runtime.close();
  }
}

/** The lowest decile, over steps, of the coordinator's post of the start -> worker 0 taking it. */
function startHop(traces: readonly Trace[]): number {
  const hops: number[] = [];
  for (const t of traces) {
    const marks = t.marks ?? [];
    const taken = marks.find((m) => m.worker === 0 && m.what === 'receive' && m.peer === COORDINATOR);
    if (taken === undefined) continue;
    const posts = marks.filter(
      (m) => m.worker === COORDINATOR && m.what === 'post' && m.peer === 0 && m.end <= taken.time,
    );
    const post = posts.at(-1);
    if (post !== undefined) hops.push(taken.time - post.end);
  }
  hops.sort((a, b) => a - b);
  return hops[Math.floor(hops.length * 0.1)] ?? 0;
}

/** The median over steps of each worker's summed task spans, averaged over workers. */
function busyPerWorker(traces: readonly Trace[]): number {
  return median(
    traces.map((t) => {
      const busy = new Map<number, number>();
      for (const s of t.spans) busy.set(s.worker, (busy.get(s.worker) ?? 0) + s.end - s.start);
      return [...busy.values()].reduce((a, b) => a + b, 0) / Math.max(1, busy.size);
    }),
  );
}

/** ms per byte of a copy (`slice`) and of a sum (the eager engine's add) of the first weight, medians of 200. */
function perByte(): { copy: number; sum: number } {
  const n = MNIST_PIXELS * HIDDEN[0];
  const a = new Tensor(
    'float32',
    [MNIST_PIXELS, HIDDEN[0]],
    Float32Array.from({ length: n }, (_, i) => i % 7),
  );
  const b = new Tensor(
    'float32',
    [MNIST_PIXELS, HIDDEN[0]],
    Float32Array.from({ length: n }, (_, i) => i % 5),
  );
  const eager = new EagerOps();
  const time = (f: () => unknown) => {
    const ms: number[] = [];
    for (let i = 0; i < 250; i++) {
      const t = performance.now();
      f();
      if (i >= 50) ms.push(performance.now() - t);
    }
    return median(ms) / (n * 4);
  };
  return { copy: time(() => (a.data as Float32Array).slice()), sum: time(() => eager.add(a, b)) };
}

/** One round's figures. */
interface Round {
  measured: [number, number];
  fixedMs: number;
  hopMs: number;
  copyMsPerMb: number;
  sumMsPerMb: number;
  strong: number[];
  strongHosts: number[];
  weak: number[];
  busy: Map<number, number>;
  busy2: number;
  hop2: number | null;
}

async function oneRound(ctx: BenchContext): Promise<Round> {
  const measured = (await scaling(ctx, mnistBatches(16, BATCH))) as [number, number];
  const costs = new Map<number, Trace[]>();
  for (const rows of SHARDS) costs.set(rows, await traced({ workers: 1 }, rows, TRACED));
  const hopMs = startHop(costs.get(BATCH)!);
  const bytes = perByte();
  const models = new Map<number, CostModel>();
  for (const [rows, traces] of costs) {
    models.set(rows, {
      ...traceCosts(mergeTraces(traces), { latencyMs: hopMs, statistic: 'median' }),
      send: (kind, n) => (kind === 'param' ? n * bytes.copy : 0),
      receive: (kind, n) => (kind === 'gradient' ? n * bytes.sum : 0),
    });
  }
  const costsAt = (rows: number) => models.get(rows)!;
  const g = graph();
  const hosts1 = projectDataParallel(g, { replicas: 1, batchSize: BATCH, costsAt, fixedMs: 0 }).makespan;
  const fixedMs = measured[0] - hosts1;
  const strong = WORKERS.map((n) =>
    projectDataParallel(g, { replicas: n, batchSize: BATCH, costsAt, fixedMs }),
  );
  const weak = WORKERS.map(
    (n) =>
      projectDataParallel(g, { replicas: n, batchSize: BATCH * n, costsAt: () => costsAt(BATCH), fixedMs })
        .stepMs,
  );
  const two = await traced({ workers: 2, replicas: 2 }, BATCH, TRACED);
  const busy = new Map([...costs].map(([rows, traces]) => [rows, busyPerWorker(traces)]));
  return {
    measured,
    fixedMs,
    hopMs,
    copyMsPerMb: bytes.copy * 1e6,
    sumMsPerMb: bytes.sum * 1e6,
    strong: strong.map((p) => p.stepMs),
    strongHosts: strong.map((p) => p.makespan),
    weak,
    busy,
    busy2: busyPerWorker(two),
    hop2: linkLatency(mergeTraces(two)),
  };
}

const spread = (xs: readonly number[]) => ({
  median_ms: round(median(xs)),
  min_ms: round(Math.min(...xs)),
  max_ms: round(Math.max(...xs)),
  runs: xs.length,
});

/** The rounds, then one line per projected case and N, and one line of calibration figures. */
export async function projection(ctx: BenchContext): Promise<void> {
  const load = loadavg()[0]!;
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await oneRound(ctx));
  const med = (f: (r: Round) => number) => round(median(rounds.map(f)), 3);
  const error2 = (r: Round) => r.measured[1] - r.strong[1]!;
  ctx.report({
    suite: ctx.suite,
    case: 'projection-calibration',
    ...spread(rounds.map((r) => r.fixedMs)),
    fixed_ms: med((r) => r.fixedMs),
    hop_ms: med((r) => r.hopMs),
    copy_ms_per_mb: med((r) => r.copyMsPerMb),
    sum_ms_per_mb: med((r) => r.sumMsPerMb),
    ...Object.fromEntries(
      SHARDS.map((rows) => [`busy_1_worker_${rows}_rows_ms`, med((r) => r.busy.get(rows)!)]),
    ),
    busy_2_workers_per_worker_ms: med((r) => r.busy2),
    hop_2_workers_ms: med((r) => r.hop2 ?? Number.NaN),
    load_average_1m: round(load, 2),
  });
  for (const [k, n] of WORKERS.entries()) {
    const ratio = (r: Round) => r.strong[0]! / r.strong[k]!;
    ctx.report({
      suite: ctx.suite,
      case: 'projected-scaling',
      ...spread(rounds.map((r) => r.strong[k]!)),
      workers: n,
      batch: BATCH,
      shard_rows: BATCH / n,
      step_ms: med((r) => r.strong[k]!),
      hosts_ms: med((r) => r.strongHosts[k]!),
      fixed_ms: med((r) => r.fixedMs),
      ratio_vs_1_worker: med(ratio),
      ratio_min: round(Math.min(...rounds.map(ratio)), 3),
      ratio_max: round(Math.max(...rounds.map(ratio)), 3),
      ...(n <= 2 ? { measured_step_ms: med((r) => r.measured[n - 1]!) } : {}),
      ...(n === 2
        ? {
            measured_ratio_vs_1_worker: med((r) => r.measured[0] / r.measured[1]),
            model_error_ms: med(error2),
            model_error: med((r) => r.strong[1]! / r.measured[1] - 1),
          }
        : {}),
      ...(n > 1
        ? {
            step_ms_if_error_grows: med((r) => r.strong[k]! + (n - 1) * error2(r)),
            ratio_if_error_grows: med((r) => r.strong[0]! / (r.strong[k]! + (n - 1) * error2(r))),
          }
        : {}),
      load_average_1m: round(load, 2),
    });
  }
  for (const [k, n] of WORKERS.entries()) {
    const ratio = (r: Round) => (n * r.weak[0]!) / r.weak[k]!;
    ctx.report({
      suite: ctx.suite,
      case: 'projected-weak-scaling',
      ...spread(rounds.map((r) => r.weak[k]!)),
      workers: n,
      batch: BATCH * n,
      shard_rows: BATCH,
      step_ms: med((r) => r.weak[k]!),
      samples_per_s: Math.round(median(rounds.map((r) => (BATCH * n) / (r.weak[k]! / 1000)))),
      ratio_vs_1_worker: med(ratio),
      load_average_1m: round(load, 2),
    });
  }
}
