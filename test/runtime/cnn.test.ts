// Convolutional networks on the runtime, bit for bit against the reference engine: a small CNN
// (conv2d -> relu -> maxPool2d -> flatten -> dense -> softmax cross-entropy) over placements,
// replicas and pipeline schedules (zb-h1 splits conv2d's backward into its input and filter
// gradients), on threads and in-process with shuffled delivery; and a second one through grouped
// and strided convolutions, average pooling and a where.
import { describe, it } from 'vitest';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { conv2d, dense } from '../../src/graph/nn.ts';
import { initParams } from '../../src/graph/params.ts';
import type { RuntimeOptions } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import type { Model } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

/** Images [B, 8, 8, 2] of 3 classes; the conv's matmuls are large enough to run on the wasm kernel. */
function feedsFor(shape: number[]) {
  return (batch: number, seed = 8) => {
    const rng = new Rng(seed);
    return {
      x: rng.normalTensor([batch, ...shape]),
      y: tensor(Array.from({ length: batch }, () => rng.int(3))),
    };
  };
}

function cnn(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 8, 8, 2]);
  const h = conv2d(b, x, 8, 3, { name: 'conv', activation: 'relu', padding: 1 });
  const logits = dense(b, b.flatten(b.maxPool2d(h, 2)), 3, { name: 'fc' });
  b.output('loss', b.softmaxCrossEntropy(logits, b.input('y', ['B'])));
  const graph = b.build();
  return { graph, params: initParams(graph, 21), feeds: feedsFor([8, 8, 2]) };
}

function mixed(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 6, 6, 2]);
  const c1 = conv2d(b, x, 4, 3, { name: 'c1', activation: 'tanh', padding: 1, groups: 2 });
  const pooled = b.avgPool2d(c1, 3, { stride: 1, padding: 1 });
  const c2 = conv2d(b, pooled, 4, 2, { name: 'c2', stride: 2, dilation: [1, 2], bias: false });
  const h = b.flatten(b.maxPool2d(c2, [1, 2], { stride: 1 }));
  const leaky = b.where(b.greater(h, 0), h, b.mul(h, 0.1));
  b.output('loss', b.softmaxCrossEntropy(dense(b, leaky, 3, { name: 'fc' }), b.input('y', ['B'])));
  const graph = b.build();
  return { graph, params: initParams(graph, 22), feeds: feedsFor([6, 6, 2]) };
}

// Threads start a pool per case (about 1 s): a few cases there, more in-process.
const THREADS: RuntimeOptions[] = [
  { workers: 3, placement: 'per-node', microbatches: 2 },
  { workers: 4, replicas: 2, placement: 'stages', microbatches: 2 },
  { workers: 2, schedule: 'gpipe', microbatches: 4 },
  { workers: 2, schedule: '1f1b', microbatches: 3 },
  { workers: 2, schedule: 'zb-h1', microbatches: 2 },
];
const IN_PROCESS: RuntimeOptions[] = [
  ...THREADS,
  { workers: 1 },
  { workers: 3, placement: 'min-comm', microbatches: 3 },
  { workers: 4, replicas: 2, placement: 'per-node', paramPlacement: 'replicated', microbatches: 2 },
  { workers: 4, replicas: 4, paramPlacement: 'replica-0' },
  { workers: 2, schedule: 'interleaved-1f1b', chunks: 2, microbatches: 4 },
  { workers: 4, replicas: 2, schedule: 'zb-h1', microbatches: 2, wrt: ['x', 'conv.w', 'conv.b', 'fc.w'] },
];

const cases = (mode: 'threads' | 'in-process', list: RuntimeOptions[]) =>
  list.map(
    (o) =>
      [
        `${mode} ${JSON.stringify(o)}`,
        { mode, ...o, ...(mode === 'in-process' ? { shuffleSeed: 5 } : {}) },
      ] as const,
  );

describe.each([
  ['threads', THREADS],
  ['in-process', IN_PROCESS],
] as const)('a CNN on the runtime (%s) equals the reference bit for bit', (mode, list) => {
  const model = cnn();
  const feeds = model.feeds(12);
  it.each(cases(mode, list))('%s', async (_, options) => {
    await expectMatchesReference(model.graph, model.params, feeds, options);
  });
});

describe('grouped, strided and dilated convolutions, average pooling and where on the runtime', () => {
  const model = mixed();
  const feeds = model.feeds(10);
  const list: RuntimeOptions[] = [
    { workers: 2, placement: 'per-node', microbatches: 2 },
    { workers: 2, schedule: 'zb-h1', microbatches: 2 },
  ];
  it.each([...cases('threads', list), ...cases('in-process', [...list, { workers: 3, replicas: 3 }])])(
    '%s',
    async (_, options) => {
      await expectMatchesReference(model.graph, model.params, feeds, options);
    },
  );
});
