/**
 * Training throughput of two models beyond the MLP, against TensorFlow.js 4.22 on its WebAssembly
 * backend running the same model in this thread (test/bench/tfjs-models.ts):
 *
 * - `cnn-*`: LeNet-5 (conv 5x5x6 pad 2, relu, maxpool 2, conv 5x5x16, relu, maxpool 2, dense 120
 *   relu, dense 84 relu, dense 10) on MNIST digits [128, 28, 28, 1], SGD lr 0.05, in samples/s;
 * - `transformer-*`: a causal transformer (2 pre-norm blocks, width 64, 4 heads, context 64, vocab
 *   80) on seeded random token sequences, 16 per batch, next-token loss over all 64 positions, Adam
 *   lr 1e-3, in tokens/s (1,024 a step).
 *
 * Each model runs as `tfjs-wasm`, `1-worker` (one worker thread, the optimizer on it) and
 * `2-workers-data-parallel` (2 worker threads, 2 replicas of half the batch). All three start from the
 * same parameters (backflow's `initParams`, copied into tfjs) and train on the same batches with the
 * same optimizer: first 3 steps each as a check that they compute the same thing (`initial_loss`,
 * the loss of the first batch before any update, and `loss_step_3`, after two updates, agree within
 * LOSS_TOLERANCE: `same_model`), then in rounds, all three in turn (1 untimed round, then 3, or 1
 * with --quick), so a burst of load on the shared machine hits them alike. The rate is the batch
 * over the median step; `ratio_vs_tfjs_wasm` ours over tfjs's (target: at least 3 on one worker),
 * `ratio_vs_1_worker` data-parallel over one worker.
 */
import { loadMnist, MNIST_CLASSES } from '../../../src/data/mnist.ts';
import { GraphBuilder } from '../../../src/graph/builder.ts';
import type { Graph } from '../../../src/graph/graph.ts';
import {
  conv2d,
  dense,
  embedding,
  layerNorm,
  positionalEmbedding,
  transformerBlock,
} from '../../../src/graph/nn.ts';
import { initParams } from '../../../src/graph/params.ts';
import { createRuntime, type RuntimeOptions } from '../../../src/runtime/runtime.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import { type Tensor, tensor, withShape } from '../../../src/tensor/tensor.ts';
import { type BenchContext, type Figure, median, round, type Suite } from '../harness.ts';
import { resultOf } from '../rounds.ts';
import {
  type Feeds,
  type OptimizerChoice,
  type TfjsEngine,
  type TransformerShape,
  tfjsLenet,
  tfjsTransformer,
  tfjsWasm,
} from '../tfjs-models.ts';

const CNN_BATCH = 128;
export const TRANSFORMER: TransformerShape = { vocab: 80, length: 64, dim: 64, heads: 4, layers: 2 };
const TRANSFORMER_BATCH = 16;
/** Parameters and data seeds, the same for every engine. */
const PARAM_SEED = 1;
const DATA_SEED = 0;
/** One worker over tfjs-wasm, at least. */
const TARGET_VS_TFJS = 3;
/** Relative difference allowed between two engines' losses on the same batch from the same parameters. */
const LOSS_TOLERANCE = 1e-3;
/** The checking steps before the rounds; the last one's loss is `loss_step_3`. */
const CHECK_STEPS = 3;
const WARMUP_ROUNDS = 1;

/** LeNet-5 over NHWC images x [B, 28, 28, 1] and class indices y [B]: outputs `logits` and `loss`. */
export function lenet(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 28, 28, 1]);
  let h = conv2d(b, x, 6, 5, { name: 'conv1', padding: 2, activation: 'relu' });
  h = b.maxPool2d(h, 2);
  h = b.maxPool2d(conv2d(b, h, 16, 5, { name: 'conv2', activation: 'relu' }), 2);
  h = dense(b, b.flatten(h), 120, { name: 'fc1', activation: 'relu' });
  h = dense(b, h, 84, { name: 'fc2', activation: 'relu' });
  const logits = b.output('logits', dense(b, h, MNIST_CLASSES, { name: 'fc3' }));
  b.output('loss', b.softmaxCrossEntropy(logits, b.input('y', ['B'])));
  return b.build();
}

/**
 * A causal transformer language model over tokens x [B, length] (integer values) with next tokens
 * y [B, length]: embeddings, pre-norm blocks, a final layerNorm and a dense head over the
 * vocabulary; `loss` is softmax cross-entropy averaged over every position.
 */
export function causalTransformer(s: TransformerShape = TRANSFORMER): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', s.length]);
  let h = embedding(b, x, s.vocab, s.dim, { name: 'tokens' });
  h = positionalEmbedding(b, h, { name: 'positions' });
  for (let i = 0; i < s.layers; i++)
    h = transformerBlock(b, h, { name: `block${i}`, heads: s.heads, causal: true });
  const logits = b.output('logits', dense(b, layerNorm(b, h, { name: 'norm' }), s.vocab, { name: 'head' }));
  b.output('loss', b.softmaxCrossEntropy(logits, b.input('y', ['B', s.length])));
  return b.build();
}

/** `count` batches of MNIST digits as images [CNN_BATCH, 28, 28, 1] in a seeded order. */
export function digitBatches(count: number): Feeds[] {
  const { train } = loadMnist({ train: count * CNN_BATCH, test: 0, seed: DATA_SEED });
  const batches = train.batches({ batchSize: CNN_BATCH, shuffle: true, seed: 1, dropLast: true });
  return Array.from({ length: count }, () => {
    const b = batches.next()!;
    return { x: withShape(b.x, [CNN_BATCH, 28, 28, 1]), y: b.y };
  });
}

/** `count` batches of seeded random sequences: x the first `length` tokens, y the next one at each position. */
export function tokenBatches(
  count: number,
  s: TransformerShape = TRANSFORMER,
  batch = TRANSFORMER_BATCH,
): Feeds[] {
  const rng = new Rng(DATA_SEED);
  return Array.from({ length: count }, () => {
    const seqs = Array.from({ length: batch }, () =>
      Array.from({ length: s.length + 1 }, () => rng.int(s.vocab)),
    );
    const shape = [batch, s.length];
    return {
      x: tensor(
        seqs.flatMap((q) => q.slice(0, -1)),
        { shape },
      ),
      y: tensor(
        seqs.flatMap((q) => q.slice(1)),
        { shape },
      ),
    };
  });
}

/** One model as the suite compares it. */
interface ModelCase {
  name: string;
  graph: Graph;
  batches: Feeds[];
  optimizer: OptimizerChoice;
  /** The same model in tfjs, from these parameters. */
  tfjs: (params: Record<string, Tensor>) => TfjsEngine;
  /** Examples (samples or tokens) a step trains on, and their name in the figures. */
  perStep: number;
  unit: 'samples' | 'tokens';
  batch: number;
  /** Steps per engine per round. */
  round: number;
}

interface Engine {
  name: string;
  workers: number | null;
  step: (f: Feeds) => Promise<number> | number;
  close: () => Promise<void> | void;
}

const CASES: readonly (readonly [string, Pick<RuntimeOptions, 'workers' | 'replicas'>])[] = [
  ['1-worker', { workers: 1 }],
  ['2-workers-data-parallel', { workers: 2, replicas: 2 }],
];

async function backflow(m: ModelCase, name: string, options: Pick<RuntimeOptions, 'workers' | 'replicas'>) {
  const runtime = await createRuntime(m.graph, {
    ...options,
    params: initParams(m.graph, PARAM_SEED),
    optimizer:
      m.optimizer.name === 'sgd' ? m.optimizer : { name: 'adam', lr: m.optimizer.lr, eps: m.optimizer.eps },
  });
  return {
    name,
    workers: options.workers,
    step: async (f: Feeds) => (await runtime.step({ x: f.x, y: f.y })).loss,
    close: () => runtime.close(),
  } satisfies Engine;
}

const agree = (a: number, b: number) => Math.abs(a - b) <= LOSS_TOLERANCE * Math.max(1, Math.abs(b));

/** Checks, then rounds of the model's engines in turn; one line per engine. */
async function compare(ctx: BenchContext, m: ModelCase, rounds: number): Promise<void> {
  const engines: Engine[] = [];
  try {
    const tfjs = m.tfjs(initParams(m.graph, PARAM_SEED));
    engines.push({ name: 'tfjs-wasm', workers: null, step: tfjs.step, close: tfjs.close });
    for (const [name, options] of CASES) engines.push(await backflow(m, name, options));
    // The checking steps: every engine from the same parameters on the same first batches.
    const losses: number[][] = [];
    for (const engine of engines) {
      const l: number[] = [];
      for (let i = 0; i < CHECK_STEPS; i++) l.push(await engine.step(m.batches[i]!));
      losses.push(l);
    }
    const samples = engines.map(() => [] as number[]);
    let served = CHECK_STEPS;
    for (let r = 0; r < WARMUP_ROUNDS + rounds; r++) {
      for (const [e, engine] of engines.entries()) {
        for (let i = 0; i < m.round; i++) {
          const t = performance.now();
          await engine.step(m.batches[(served + i) % m.batches.length]!);
          if (r >= WARMUP_ROUNDS) samples[e]!.push(performance.now() - t);
        }
      }
      served += m.round;
    }
    const rate = (ms: readonly number[]) => m.perStep / (median(ms) / 1000);
    const key = `${m.unit}_per_s`;
    const [tfjsRate, oneWorker] = [rate(samples[0]!), rate(samples[1]!)];
    const [tfjsFirst, tfjsLast] = [losses[0]![0]!, losses[0]![CHECK_STEPS - 1]!];
    for (const [e, engine] of engines.entries()) {
      const [first, last] = [losses[e]![0]!, losses[e]![CHECK_STEPS - 1]!];
      const own = rate(samples[e]!);
      const figures: Record<string, Figure> =
        e === 0
          ? { simd: tfjs.simd, threads: tfjs.threads, [key]: Math.round(own) }
          : {
              workers: engine.workers!,
              [key]: Math.round(own),
              [`tfjs_wasm_${key}`]: Math.round(tfjsRate),
              ratio_vs_tfjs_wasm: round(own / tfjsRate, 2),
              ...(engine.workers === 1
                ? {
                    target_ratio_vs_tfjs_wasm: TARGET_VS_TFJS,
                    meets_target: own / tfjsRate >= TARGET_VS_TFJS,
                  }
                : { ratio_vs_1_worker: round(own / oneWorker, 2) }),
              tfjs_initial_loss: round(tfjsFirst, 5),
              tfjs_loss_step_3: round(tfjsLast, 5),
              same_model: agree(first, tfjsFirst) && agree(last, tfjsLast),
            };
      ctx.report(
        resultOf(ctx, `${m.name}-${engine.name}`, samples[e]!, {
          batch: m.batch,
          ...figures,
          initial_loss: round(first, 5),
          loss_step_3: round(last, 5),
        }),
      );
    }
  } finally {
    for (const e of engines) await e.close();
  }
}

export const modelsSuite: Suite = {
  name: 'models',
  description:
    'LeNet-5 (samples/s) and a small causal transformer (tokens/s): 1 worker and 2 data-parallel vs tfjs-wasm',
  flags: { quick: 'one timed round of fewer steps per model' },
  async run(ctx: BenchContext) {
    const quick = ctx.flags.has('quick');
    const rounds = quick ? 1 : 3;
    const tf = await tfjsWasm();
    const cnnSgd: OptimizerChoice = { name: 'sgd', lr: 0.05 };
    await compare(
      ctx,
      {
        name: 'cnn',
        graph: lenet(),
        batches: digitBatches(16),
        optimizer: cnnSgd,
        tfjs: (params) => tfjsLenet(tf, params, cnnSgd, MNIST_CLASSES),
        perStep: CNN_BATCH,
        unit: 'samples',
        batch: CNN_BATCH,
        round: quick ? 5 : 20,
      },
      rounds,
    );
    const adam: OptimizerChoice = { name: 'adam', lr: 1e-3, eps: 1e-8 };
    await compare(
      ctx,
      {
        name: 'transformer',
        graph: causalTransformer(),
        batches: tokenBatches(16),
        optimizer: adam,
        tfjs: (params) => tfjsTransformer(tf, params, adam, TRANSFORMER),
        perStep: TRANSFORMER_BATCH * TRANSFORMER.length,
        unit: 'tokens',
        batch: TRANSFORMER_BATCH,
        round: quick ? 3 : 10,
      },
      rounds,
    );
  },
};
