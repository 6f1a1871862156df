/**
 * Training throughput (issue 5): the MLP 784-256-128-10 (relu) on MNIST digits, batch 128, SGD with
 * lr 0.1, in samples per second, for
 *
 * - `1-worker`: one worker thread, the optimizer on it;
 * - `2-workers-data-parallel`: 2 worker threads, 2 replicas of 64 examples each;
 * - `2-stage-pipeline`: 2 worker threads as 2 stages, 1F1B over 4 microbatches of 32;
 * - `tfjs-wasm`: TensorFlow.js 4.22 on its WebAssembly backend (wasm files from node_modules, no
 *   network), the same MLP trained by its stock `optimizer.minimize`, in this thread.
 * - `torch-1-thread`, `torch-2-threads`: PyTorch on the CPU with 1 and 2 threads, the same MLP, batch
 *   and SGD (forward, cross-entropy, backward, update, loss read back) on seeded random batches of
 *   the same shapes, in a child process (test/bench/peers/torch_train.py, which times its own steps),
 *   its rounds in turn with the engines'. Where `python3` (or BACKFLOW_BENCH_PYTHON) cannot import
 *   torch, one line `torch skipped` says why and the rest runs as before.
 *
 * - `scaling-1-worker`, `scaling-2-workers-data-parallel`: the first two again, each alone in the
 *   process for 500 contiguous steps, and for 500 more from its 1,500th (see `scaling`).
 * - `mnist-load`: `loadMnist()` itself, the default 8,000/2,000 split that `npm start` trains on.
 *
 * Every engine trains on the same batches (a seeded order over 2,048 digits), all four in turn in
 * rounds of 100 steps (1 warm-up round, then 3: 300 timed steps each); `samples_per_s` is 128 over the
 * median step, `ratio_vs_tfjs_wasm` ours over tfjs's, `ratio_vs_1_worker` over one worker's,
 * `ratio_vs_torch_1_thread` ours over torch's on one thread (and, for the 2-worker cases,
 * `ratio_vs_torch_2_threads` over torch's on two). `kernels` names the kernels backflow ran. Targets:
 * data-parallel on 2 workers at least as fast as tfjs-wasm (issue 5) and at least 1.6x one worker,
 * one worker at least 25,000 samples/s (issue 6), one worker at least 0.6x torch on one thread and 2
 * workers at least torch's one thread (issue 17).
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import { loadMnist, MNIST_CLASSES, MNIST_PIXELS } from '../../../src/data/mnist.ts';
import { initParams } from '../../../src/graph/params.ts';
import { createRuntime, type RuntimeOptions } from '../../../src/runtime/runtime.ts';
import { kernelsInUse } from '../../../src/tensor/default-kernels.ts';
import type { Tensor } from '../../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../../src/train/models.ts';
import { type BenchContext, median, round, type Suite } from '../harness.ts';
import { startTorch, type TorchPeer, torchPython } from '../peers/torch.ts';
import { resultOf } from '../rounds.ts';

export const BATCH = 128;
export const HIDDEN = [256, 128] as const;
export const LR = 0.1;
/** Steps per engine per round, rounds, and untimed rounds first. */
const ROUND = 100;
const ROUNDS = 3;
const WARMUP_ROUNDS = 1;
/** Issue 6's target: samples/s on one worker. */
const ONE_WORKER_TARGET = 25_000;
/** Issue 17's targets: 2 workers data-parallel over one worker; samples/s over torch's on 1 thread. */
const SCALING_TARGET = 1.6;
const TORCH_TARGETS: Readonly<Record<string, number>> = { '1-worker': 0.6, '2-workers-data-parallel': 1 };

/** The case's target against torch on one thread, and whether `ratio` meets it (nothing for other cases). */
function torchTarget(name: string, ratio: number): Record<string, number | boolean> {
  const target = Object.hasOwn(TORCH_TARGETS, name) ? TORCH_TARGETS[name]! : undefined;
  return target === undefined
    ? {}
    : { target_ratio_vs_torch_1_thread: target, meets_target_vs_torch_1_thread: ratio >= target };
}

export interface Batch {
  x: Tensor;
  y: Tensor;
}

/** `count` batches of `rows` digits (default the suite's batch), in a seeded order. */
export function mnistBatches(count: number, rows = BATCH): Batch[] {
  const { train } = loadMnist({ train: count * rows, test: 0, seed: 0 });
  const batches = train.batches({ batchSize: rows, shuffle: true, seed: 1, dropLast: true });
  return Array.from({ length: count }, () => {
    const b = batches.next()!;
    return { x: b.x, y: b.y };
  });
}

/** One training step of an engine on a batch, resolved when its loss is known. */
export type Engine = {
  name: string;
  workers: number | null;
  replicas?: number;
  step: (b: Batch) => unknown;
  close: () => Promise<void>;
};

const CASES: readonly (readonly [string, Omit<RuntimeOptions, 'optimizer' | 'params'>])[] = [
  ['1-worker', { workers: 1 }],
  ['2-workers-data-parallel', { workers: 2, replicas: 2 }],
  ['2-stage-pipeline', { workers: 2, schedule: '1f1b', microbatches: 4 }],
];

/** The MLP on a runtime with these options, SGD on its workers (the cluster suite runs it on node processes). */
export async function backflow(
  name: string,
  options: Omit<RuntimeOptions, 'optimizer' | 'params'>,
): Promise<Engine> {
  const graph = mlpClassifier({ features: MNIST_PIXELS, hidden: HIDDEN, classes: MNIST_CLASSES });
  const runtime = await createRuntime(graph, {
    ...options,
    params: initParams(graph, 1),
    optimizer: { name: 'sgd', lr: LR },
  });
  return {
    name,
    workers: options.workers,
    ...(options.replicas !== undefined ? { replicas: options.replicas } : {}),
    step: (b) => runtime.step({ x: b.x, y: b.y }),
    close: () => runtime.close(),
  };
}

/** The same MLP in TensorFlow.js on its wasm backend, trained by `optimizer.minimize`, in this thread. */
async function tfjsWasm(batches: readonly Batch[]): Promise<Engine & { simd: boolean; threads: boolean }> {
  // Loaded here, not at the top: the runner imports every suite, and tfjs takes a while to load.
  // The umbrella package registers the gradients `minimize` needs (tfjs-core alone has none).
  const tf = await import('@tensorflow/tfjs');
  const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
  const wasm = createRequire(import.meta.url).resolve(
    '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm',
  );
  setWasmPaths(`${dirname(wasm)}/`);
  if (!(await tf.setBackend('wasm'))) throw new Error('train bench: the tfjs wasm backend did not start');
  await tf.ready();
  const sizes = [MNIST_PIXELS, ...HIDDEN, MNIST_CLASSES];
  const weights = sizes
    .slice(1)
    .map((n, i) => tf.variable(tf.randomNormal([sizes[i]!, n], 0, Math.sqrt(2 / sizes[i]!), 'float32', 1)));
  const biases = sizes.slice(1).map((n) => tf.variable(tf.zeros([n])));
  const optimizer = tf.train.sgd(LR);
  const data = new Map(
    batches.map((b) => [
      b,
      {
        x: tf.tensor2d(b.x.data as Float32Array, [BATCH, MNIST_PIXELS]),
        y: tf.oneHot(tf.tensor1d(b.y.data as Float32Array, 'int32'), MNIST_CLASSES),
      },
    ]),
  );
  return {
    name: 'tfjs-wasm',
    workers: null,
    simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
    threads: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT'),
    step: (b) => {
      const { x, y } = data.get(b)!;
      const loss = optimizer.minimize(() => {
        let h: TF.Tensor = x;
        weights.forEach((w, i) => {
          const z = tf.add(tf.matMul(h, w), biases[i]!);
          h = i < weights.length - 1 ? tf.relu(z) : z;
        });
        return tf.losses.softmaxCrossEntropy(y, h) as TF.Scalar;
      }, true);
      // Reading the loss waits for the step, as our step waits for its loss.
      loss!.dataSync();
      loss!.dispose();
    },
    close: async () => {
      for (const d of data.values()) tf.dispose([d.x, d.y]);
      tf.dispose([...weights, ...biases]);
      optimizer.dispose();
    },
  };
}

/** The torch peers on 1 and 2 threads, or none, with one `torch skipped` line saying why. */
async function torchPeers(ctx: BenchContext): Promise<TorchPeer[]> {
  const peers: TorchPeer[] = [];
  try {
    for (const threads of [1, 2]) peers.push(await startTorch(threads, { batch: BATCH, lr: LR }));
    return peers;
  } catch (error) {
    await Promise.all(peers.map((p) => p.close()));
    const reason = `${torchPython()} cannot run PyTorch: ${error instanceof Error ? error.message : error}`;
    ctx.report({
      suite: ctx.suite,
      case: 'torch skipped',
      median_ms: 0,
      min_ms: 0,
      max_ms: 0,
      runs: 0,
      error: reason,
    });
    return [];
  }
}

export const trainSuite: Suite = {
  name: 'train',
  description:
    'MNIST MLP 784-256-128-10, batch 128, SGD: samples/s on 1 worker, 2 data-parallel, a 2-stage pipeline, vs tfjs-wasm and PyTorch (1 and 2 threads, where python3 has torch)',
  flags: {
    scaling: 'only the scaling-* cases (1 worker, then 2 data-parallel, each alone)',
    projection:
      'the scaling cases, a calibration and the simulated data-parallel step on 1, 2, 4, 8 workers (test/bench/projection.ts)',
  },
  async run(ctx: BenchContext) {
    if (ctx.flags.has('projection')) {
      // Imported here: the projection imports this module's helpers.
      const { projection } = await import('../projection.ts');
      await projection(ctx);
      return;
    }
    if (ctx.flags.has('scaling')) {
      await scaling(ctx, mnistBatches(16));
      return;
    }
    await ctx.measure('mnist-load', () => loadMnist({ seed: 1 }), {
      runs: 5,
      warmup: 1,
      extra: { digits: 10_000 },
    });
    const batches = mnistBatches(16);
    const engines: Engine[] = [];
    let peers: TorchPeer[] = [];
    try {
      engines.push(await tfjsWasm(batches));
      for (const [name, options] of CASES) engines.push(await backflow(name, options));
      peers = await torchPeers(ctx);
      // Rounds of ROUND steps of each engine in turn, so a burst of load from other processes on
      // the shared machine hits all of them alike.
      const samples = engines.map(() => [] as number[]);
      const peerSamples = peers.map(() => [] as number[]);
      let served = 0;
      for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
        for (const [e, engine] of engines.entries()) {
          for (let i = 0; i < ROUND; i++) {
            const t = performance.now();
            await engine.step(batches[(served + i) % batches.length]!);
            if (round >= WARMUP_ROUNDS) samples[e]!.push(performance.now() - t);
          }
        }
        for (const [p, peer] of peers.entries()) {
          const ms = await peer.round(ROUND);
          if (round >= WARMUP_ROUNDS) peerSamples[p]!.push(...ms);
        }
        served += ROUND;
      }
      const rate = (ms: readonly number[]) => BATCH / (median(ms) / 1000);
      const tfjsRate = rate(samples[0]!);
      const tfjs = engines[0] as Awaited<ReturnType<typeof tfjsWasm>>;
      ctx.report(
        resultOf(ctx, 'tfjs-wasm', samples[0]!, {
          batch: BATCH,
          simd: tfjs.simd,
          threads: tfjs.threads,
          samples_per_s: Math.round(tfjsRate),
        }),
      );
      const torchRates = peerSamples.map(rate);
      for (const [p, peer] of peers.entries()) {
        ctx.report(
          resultOf(ctx, peer.name, peerSamples[p]!, {
            batch: BATCH,
            threads: peer.threads,
            torch: peer.version,
            samples_per_s: Math.round(torchRates[p]!),
          }),
        );
      }
      const oneWorker = rate(samples[engines.findIndex((e) => e.name === '1-worker')]!);
      for (const [e, engine] of engines.entries()) {
        if (e === 0) continue;
        const ratio = rate(samples[e]!) / tfjsRate;
        const scaling = rate(samples[e]!) / oneWorker;
        ctx.report(
          resultOf(ctx, engine.name, samples[e]!, {
            batch: BATCH,
            workers: engine.workers!,
            samples_per_s: Math.round(rate(samples[e]!)),
            kernels: kernelsInUse(),
            tfjs_wasm_samples_per_s: Math.round(tfjsRate),
            ratio_vs_tfjs_wasm: round(ratio, 2),
            ...(torchRates.length === 2
              ? {
                  ratio_vs_torch_1_thread: round(rate(samples[e]!) / torchRates[0]!, 2),
                  ...torchTarget(engine.name, rate(samples[e]!) / torchRates[0]!),
                  ...(engine.workers === 2
                    ? { ratio_vs_torch_2_threads: round(rate(samples[e]!) / torchRates[1]!, 2) }
                    : {}),
                }
              : {}),
            // Issue 5's target is for data-parallel training on 2 workers (at least tfjs-wasm);
            // issue 6's: one worker at least 25,000 samples/s; issue 17's: 2 data-parallel at least 1.6x it.
            ...(engine.name === '1-worker'
              ? {
                  target_samples_per_s: ONE_WORKER_TARGET,
                  meets_target: rate(samples[e]!) >= ONE_WORKER_TARGET,
                }
              : {}),
            ...(engine.replicas === 2
              ? {
                  target_ratio_vs_tfjs_wasm: 1,
                  meets_target_vs_tfjs_wasm: ratio >= 1,
                  ratio_vs_1_worker: round(scaling, 2),
                  target_ratio_vs_1_worker: SCALING_TARGET,
                  meets_target_vs_1_worker: scaling >= SCALING_TARGET,
                }
              : {}),
          }),
        );
      }
    } finally {
      await Promise.all([...engines.map((e) => e.close()), ...peers.map((p) => p.close())]);
    }
    await scaling(ctx, batches);
  },
};

/** Steps of the contiguous blocks of `scaling`: untimed, then timed. */
const BLOCK_WARMUP = 50;
const BLOCK = 500;
/** The later block of `scaling`: its first step, and it is BLOCK steps long. */
const LATE_FROM = 1500;

/**
 * `scaling-*`: 1 worker, then 2 workers data-parallel, each alone in the process (the engines above
 * closed) for one contiguous block. Alternating engines in rounds slows the worker engines on this
 * machine (data-parallel 2.75 ms alone against 3.47 ms alternating with the 1-worker engine, same
 * process), so this is the fairer figure for issue 17's 1.6x target. The data-parallel step keeps
 * getting faster for about 1,500 steps here (docs/measurements.md, 2026-12-06): each engine then
 * runs on to a later block of as many steps from step LATE_FROM (`late_median_ms`,
 * `late_ratio_vs_1_worker`), the figure of a long training run.
 */
export async function scaling(ctx: BenchContext, batches: readonly Batch[]): Promise<number[]> {
  const medians: number[] = [];
  const lateMedians: number[] = [];
  for (const [name, options] of CASES.slice(0, 2)) {
    const engine = await backflow(name, options);
    try {
      const samples: number[] = [];
      const late: number[] = [];
      for (let i = 0; i < LATE_FROM + BLOCK; i++) {
        const t = performance.now();
        await engine.step(batches[i % batches.length]!);
        if (i >= BLOCK_WARMUP && i < BLOCK_WARMUP + BLOCK) samples.push(performance.now() - t);
        else if (i >= LATE_FROM) late.push(performance.now() - t);
      }
      medians.push(median(samples));
      lateMedians.push(median(late));
      const ratio = medians[0]! / median(samples);
      const lateRatio = lateMedians[0]! / median(late);
      ctx.report(
        resultOf(ctx, `scaling-${name}`, samples, {
          batch: BATCH,
          workers: engine.workers!,
          samples_per_s: Math.round(BATCH / (median(samples) / 1000)),
          late_median_ms: round(median(late)),
          ...(engine.replicas === 2
            ? {
                ratio_vs_1_worker: round(ratio, 2),
                late_ratio_vs_1_worker: round(lateRatio, 2),
                target_ratio_vs_1_worker: SCALING_TARGET,
                meets_target: ratio >= SCALING_TARGET,
                late_meets_target: lateRatio >= SCALING_TARGET,
              }
            : {}),
        }),
      );
    } finally {
      await engine.close();
    }
  }
  return medians;
}
