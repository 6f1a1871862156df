// Small models the runtime tests share.
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';

export interface Model {
  graph: Graph;
  params: Record<string, Tensor>;
  feeds(batch: number, seed?: number): Record<string, Tensor>;
}

/**
 * An MLP classifier 32 -> 64 -> 10 (relu) whose matmuls are large enough for the wasm kernels at a
 * batch of 64 (Note [small tensors stay in TypeScript]): the model for tests of the kernel choice.
 */
export function wideMlp(): Model {
  const graph = mlpClassifier({ features: 32, hidden: [64], classes: 10 });
  return {
    graph,
    params: initParams(graph, 5),
    feeds: (batch, seed = 7) => {
      const rng = new Rng(seed);
      return {
        x: rng.normalTensor([batch, 32]),
        y: tensor(Array.from({ length: batch }, () => rng.int(10))),
      };
    },
  };
}

/** An MLP classifier: 4 -> 16 -> 8 -> 3, tanh and gelu, softmax cross-entropy. */
export function mlp(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  const y = b.input('y', ['B']);
  const h1 = b.tanh(
    b.add(b.matmul(x, b.param('w1', [4, 16])), b.param('b1', [16], { init: { kind: 'normal', std: 0.1 } })),
  );
  const h2 = b.gelu(
    b.add(b.matmul(h1, b.param('w2', [16, 8])), b.param('b2', [8], { init: { kind: 'normal', std: 0.1 } })),
  );
  const logits = b.add(b.matmul(h2, b.param('w3', [8, 3])), b.param('b3', [3], { init: { kind: 'zeros' } }));
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 11),
    feeds: (batch, seed = 3) => {
      const rng = new Rng(seed);
      return { x: rng.normalTensor([batch, 4]), y: tensor(Array.from({ length: batch }, () => rng.int(3))) };
    },
  };
}

/** One parameter used in two places: an embedding table reused, transposed, as the output projection. */
export function tied(): Model {
  const b = new GraphBuilder();
  const ids = b.input('ids', ['B']);
  const y = b.input('y', ['B']);
  const table = b.param('table', [6, 4], { init: { kind: 'normal', std: 0.5 } });
  const h = b.tanh(b.matmul(b.gather(table, ids), b.param('w', [4, 4])));
  const logits = b.matmul(h, table, { transB: true });
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 5),
    feeds: (batch, seed = 4) => {
      const rng = new Rng(seed);
      return {
        ids: tensor(Array.from({ length: batch }, () => rng.int(6))),
        y: tensor(Array.from({ length: batch }, () => rng.int(6))),
      };
    },
  };
}

/** A deep MLP (width 8, `layers` tanh layers) for pipelines: enough nodes for 8 stages. */
export function deepMlp(layers = 8): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 8]);
  const y = b.input('y', ['B']);
  let h = x;
  for (let i = 0; i < layers; i++)
    h = b.tanh(
      b.add(
        b.matmul(h, b.param(`w${i}`, [8, 8])),
        b.param(`b${i}`, [8], { init: { kind: 'normal', std: 0.1 } }),
      ),
    );
  b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('out', [8, 4])), y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 21),
    feeds: (batch, seed = 8) => {
      const rng = new Rng(seed);
      return { x: rng.normalTensor([batch, 8]), y: tensor(Array.from({ length: batch }, () => rng.int(4))) };
    },
  };
}

/** A language-model-like pipeline: the input embedding reused (transposed) as the output projection. */
export function tiedDeep(layers = 6): Model {
  const b = new GraphBuilder();
  const ids = b.input('ids', ['B']);
  const y = b.input('y', ['B']);
  const table = b.param('embedding', [10, 8], { init: { kind: 'normal', std: 0.5 } });
  let h = b.gather(table, ids);
  for (let i = 0; i < layers; i++) h = b.tanh(b.matmul(h, b.param(`w${i}`, [8, 8])));
  b.output('loss', b.softmaxCrossEntropy(b.matmul(h, table, { transB: true }), y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 3),
    feeds: (batch, seed = 6) => {
      const rng = new Rng(seed);
      return {
        ids: tensor(Array.from({ length: batch }, () => rng.int(10))),
        y: tensor(Array.from({ length: batch }, () => rng.int(10))),
      };
    },
  };
}

/**
 * An MLP with a symbolic batch, two stages, every kind of leaf (a const holding -0 and a denormal),
 * names, and G+B appended by gradGraph: a graph that exercises every field of the graph formats.
 */
export function everyFieldGraph(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 6]);
  const y = b.input('y', ['B']);
  const w1 = b.param('w1', [6, 5], { init: { kind: 'heNormal' } });
  const h = b.name(b.tanh(b.matmul(x, w1)), 'h1');
  b.onStage(1, () => {
    const w2 = b.param('w2', [5, 3], { init: { kind: 'uniform', low: -0.5, high: 0.5 } });
    const bias = b.const(tensor([0.25, -0, 1e-40]), 'bias');
    const logits = b.add(b.matmul(h, w2), bias);
    b.output('loss', b.softmaxCrossEntropy(b.reshape(logits, ['B', -1]), y));
  });
  return gradGraph(b.build(), { loss: 'loss' });
}

/**
 * Nodes fed only by parameters and constants (Note [fixed-input nodes]): a decoder tied to the encoder
 * through `transpose(W)`, a weight-decay term `sum(square(W))`, `exp` of a constant, and a parameter
 * `v` whose whole path to the loss holds no input.
 */
export function fixedInputs(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 3]);
  const y = b.input('y', ['B', 3]);
  const w = b.param('w', [3, 3], { init: { kind: 'normal', std: 0.5 } });
  const v = b.param('v', [3], { init: { kind: 'normal', std: 0.5 } });
  const h = b.tanh(b.matmul(x, w));
  const decoded = b.matmul(h, b.transpose(w));
  const gain = b.exp(b.const(tensor([0.5, -0.25, 0.125])));
  const err = b.mul(b.sub(decoded, y), gain);
  const decay = b.mul(b.sum(b.square(w)), 0.01);
  const prior = b.mean(b.square(b.sub(v, b.const(tensor([1, 2, 3])))));
  b.output('loss', b.add(b.add(b.mean(b.square(err)), decay), prior));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 9),
    feeds: (batch, seed = 6) => {
      const rng = new Rng(seed);
      return { x: rng.normalTensor([batch, 3]), y: rng.normalTensor([batch, 3]) };
    },
  };
}

/**
 * An MLP with dropout after each hidden layer and on a parameter (a mask drawn by a node fed only by
 * a parameter and its key): 4 -> 16 -> 8 -> 3, outputs `logits` and `loss`.
 */
export function dropoutMlp(rate = 0.3): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  const y = b.input('y', ['B']);
  const h1 = b.dropout(b.tanh(b.matmul(x, b.param('w1', [4, 16]))), rate);
  const w2 = b.dropout(b.param('w2', [16, 8]), rate, { seed: 5 });
  const h2 = b.dropout(b.gelu(b.matmul(h1, w2)), rate);
  const logits = b.output('logits', b.matmul(h2, b.param('w3', [8, 3])));
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 13),
    feeds: (batch, seed = 3) => {
      const rng = new Rng(seed);
      return { x: rng.normalTensor([batch, 4]), y: tensor(Array.from({ length: batch }, () => rng.int(3))) };
    },
  };
}
