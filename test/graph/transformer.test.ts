// The transformer layers of nn.ts: shapes and parameters, attention against a direct float64
// implementation written with loops, causality, learned positions, gradcheck, and a transformer
// with dropout on the runtime against referenceStep, bit for bit.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { gradcheck } from '../../src/autodiff/gradcheck.ts';
import { InputError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { causalBias, multiHeadAttention, positionalEmbedding, transformerBlock } from '../../src/graph/nn.ts';
import { initParams } from '../../src/graph/params.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { transformerClassifier } from '../../src/train/models.ts';
import { expectBitwise, expectRelativelyClose } from '../support/expect.ts';
import { expectMatchesReference } from '../support/reference.ts';

/** A graph with input x of `shape` (float64) and output `out` = layer(x). */
function layer(shape: (number | string)[], f: (b: GraphBuilder, x: Node) => Node): Graph {
  const b = new GraphBuilder();
  b.output('out', f(b, b.input('x', shape, 'float64')));
  return b.build();
}

const shapes = (graph: Graph) => Object.fromEntries(graph.params().map((p) => [p.name!, p.shape]));

/** Parameters of every shape drawn uniformly in [-1, 1), float64. */
const randomParams = (graph: Graph, seed: number) => {
  const rng = new Rng(seed);
  return Object.fromEntries(
    graph.params().map((p) => [p.name!, rng.uniformTensor(p.shape as number[], -1, 1, 'float64')]),
  );
};

/** y = x w + b for x [T, in] as nested arrays. */
const project = (x: number[][], w: Tensor, bias: Tensor) =>
  x.map((row) =>
    Array.from({ length: bias.size }, (_, j) =>
      row.reduce((s, v, i) => s + v * w.data[i * bias.size + j]!, bias.data[j]!),
    ),
  );

/** Multi-head attention for one sequence x [T, dim], with loops: the oracle. */
function attentionByHand(
  x: number[][],
  p: Record<string, Tensor>,
  heads: number,
  causal: boolean,
): number[][] {
  const [q, k, v] = ['q', 'k', 'v'].map((n) => project(x, p[`a.${n}.w`]!, p[`a.${n}.b`]!)) as [
    number[][],
    number[][],
    number[][],
  ];
  const length = x.length;
  const dim = x[0]!.length;
  const head = dim / heads;
  const joined = x.map(() => new Array<number>(dim).fill(0));
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < length; t++) {
      const scores = Array.from({ length }, (_, s) => {
        if (causal && s > t) return Number.NEGATIVE_INFINITY;
        let dot = 0;
        for (let d = 0; d < head; d++) dot += q[t]![h * head + d]! * k[s]![h * head + d]!;
        return dot / Math.sqrt(head);
      });
      const top = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - top));
      const z = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < head; d++)
        joined[t]![h * head + d] = e.reduce((a, w, s) => a + (w / z) * v[s]![h * head + d]!, 0);
    }
  }
  return project(joined, p['a.o.w']!, p['a.o.b']!);
}

describe('multiHeadAttention', () => {
  it('projects q, k, v and the output with [dim, dim] dense layers, and keeps the shape', () => {
    const graph = layer(['B', 5, 6], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 3 }));
    expect(shapes(graph)).toEqual({
      'a.q.w': [6, 6],
      'a.q.b': [6],
      'a.k.w': [6, 6],
      'a.k.b': [6],
      'a.v.w': [6, 6],
      'a.v.b': [6],
      'a.o.w': [6, 6],
      'a.o.b': [6],
    });
    expect(graph.node('out').shape).toEqual(['B', 5, 6]);
  });

  it.each([
    [1, false],
    [2, false],
    [2, true],
    [4, true],
  ])('%i heads, causal %s: equal to attention written with loops', (heads, causal) => {
    const graph = layer([2, 5, 4], (b, x) => multiHeadAttention(b, x, { name: 'a', heads, causal }));
    const params = randomParams(graph, heads);
    const x = new Rng(7).uniformTensor([2, 5, 4], -1, 1, 'float64');
    const out = evaluate(graph, { x }, params)['out']!;
    const expected = [0, 1].flatMap((s) => {
      const rows = Array.from({ length: 5 }, (_, t) =>
        Array.from(x.data.subarray((s * 5 + t) * 4, (s * 5 + t + 1) * 4)),
      );
      return attentionByHand(rows, params, heads, causal).flat();
    });
    expectRelativelyClose(out, expected, [2, 5, 4], 1e-12);
  });

  it('causal: position t does not see later positions (their change leaves it bit for bit)', () => {
    const graph = layer([1, 6, 4], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 2, causal: true }));
    const open = layer([1, 6, 4], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 2 }));
    const params = randomParams(graph, 3);
    const x = new Rng(8).uniformTensor([1, 6, 4], -1, 1, 'float64');
    const later = tensor(
      Array.from(x.data, (v, i) => (i >= 3 * 4 ? v + 1 : v)),
      { shape: [1, 6, 4], dtype: 'float64' },
    );
    const first3 = (g: Graph, input: Tensor) =>
      tensor(Array.from(evaluate(g, { x: input }, params)['out']!.data.subarray(0, 12)), {
        dtype: 'float64',
      });
    expectBitwise(first3(graph, later), first3(graph, x));
    expect(Array.from(first3(open, later).data)).not.toEqual(Array.from(first3(open, x).data));
  });

  it('the causal mask is 0 on and below the diagonal, -1e9 above', () => {
    expect(Array.from(causalBias(3).data)).toEqual([0, -1e9, -1e9, 0, 0, -1e9, 0, 0, 0].map(Math.fround));
  });

  it('adds a given mask to the scores: -1e9 on a key is the same as leaving the key out', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 3, 2], 'float64');
    const mask = b.input('mask', [1, 1, 1, 3], 'float64');
    b.output('out', multiHeadAttention(b, x, { name: 'a', heads: 1, mask }));
    const graph = b.build();
    const params = randomParams(graph, 4);
    const xs = new Rng(9).uniformTensor([1, 3, 2], -1, 1, 'float64');
    const out = evaluate(graph, { x: xs, mask: tensor([[[[0, 0, -1e9]]]], { dtype: 'float64' }) }, params)[
      'out'
    ]!;
    const rows = [0, 1, 2].map((t) => Array.from(xs.data.subarray(t * 2, t * 2 + 2)));
    // Without key 2, queries 0 and 1 attend to keys 0 and 1 only: attention over the first two rows.
    const byHand = attentionByHand(rows.slice(0, 2), params, 1, false).flat();
    for (const [i, v] of Array.from(out.data.subarray(0, 4)).entries()) expect(v).toBeCloseTo(byHand[i]!, 12);
  });

  it('refuses an input that is not [batch, length, dim], and heads that do not divide dim', () => {
    expect(() => layer([5, 6], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 2 }))).toThrow(
      ShapeError,
    );
    expect(() => layer([2, 'T', 6], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 2 }))).toThrow(
      /axis 1 .* must be a number/,
    );
    expect(() => layer([2, 5, 6], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 4 }))).toThrow(
      InputError,
    );
  });
});

describe('positionalEmbedding', () => {
  it('adds row t of a learned [maxLength, dim] table at position t', () => {
    const graph = layer(['B', 3, 2], (b, x) => positionalEmbedding(b, x, { name: 'pos', maxLength: 5 }));
    expect(graph.params().map((p) => [p.name, p.shape, p.attrs.init])).toEqual([
      ['pos.table', [5, 2], { kind: 'normal', mean: 0, std: 0.02 }],
    ]);
    const table = tensor(
      Array.from({ length: 10 }, (_, i) => 10 * i),
      { shape: [5, 2], dtype: 'float64' },
    );
    const x = tensor(
      Array.from({ length: 12 }, (_, i) => i),
      { shape: [2, 3, 2], dtype: 'float64' },
    );
    const out = evaluate(graph, { x }, { 'pos.table': table })['out']!;
    expect(Array.from(out.data)).toEqual([0, 11, 22, 33, 44, 55, 6, 17, 28, 39, 50, 61]);
    expect(() =>
      layer(['B', 3, 2], (b, x) => positionalEmbedding(b, x, { name: 'p', maxLength: 2 })),
    ).toThrow(InputError);
  });
});

describe('transformerBlock', () => {
  it('is pre-norm with a GELU MLP of 4 x dim, and names its parameters', () => {
    const graph = layer(['B', 4, 8], (b, x) => transformerBlock(b, x, { name: 't', heads: 2, dropout: 0.1 }));
    const names = Object.keys(shapes(graph));
    expect(names.filter((n) => !n.startsWith('t.attn.'))).toEqual([
      't.ln1.g',
      't.ln1.b',
      't.ln2.g',
      't.ln2.b',
      't.mlp.0.w',
      't.mlp.0.b',
      't.mlp.1.w',
      't.mlp.1.b',
    ]);
    expect(shapes(graph)['t.mlp.0.w']).toEqual([8, 32]);
    // Attention weights and both residual branches.
    expect(graph.nodes.filter((n) => n.op === 'dropout')).toHaveLength(3);
    expect(graph.node('out')).toMatchObject({ op: 'add', shape: ['B', 4, 8] });
  });

  it('is x + attention(ln(x)) then h + mlp(ln(h)): with the branches zeroed, the identity', () => {
    const graph = layer([2, 3, 4], (b, x) => transformerBlock(b, x, { name: 't', heads: 2 }));
    const params = randomParams(graph, 5);
    for (const name of ['t.attn.o.w', 't.attn.o.b', 't.mlp.1.w', 't.mlp.1.b'])
      params[name] = tensor(new Array(params[name]!.size).fill(0), {
        shape: [...params[name]!.shape],
        dtype: 'float64',
      });
    const x = new Rng(10).uniformTensor([2, 3, 4], -1, 1, 'float64');
    expectBitwise(evaluate(graph, { x }, params)['out']!, x);
  });
});

describe('gradcheck through the transformer layers', () => {
  const TOL = { atol: 1e-6, rtol: 1e-5 };
  it.each([false, true])('attention, causal %s', (causal) => {
    const graph = layer([2, 3, 4], (b, x) => multiHeadAttention(b, x, { name: 'a', heads: 2, causal }));
    const feeds = { x: new Rng(11).uniformTensor([2, 3, 4], -1, 1, 'float64') };
    const report = gradcheck(graph, {
      loss: 'out',
      wrt: ['x', 'a.q.w', 'a.k.b', 'a.v.w', 'a.o.w'],
      feeds,
      params: randomParams(graph, 6),
      ...TOL,
    });
    expect(report.failures).toEqual([]);
  });

  it('a block with dropout (the mask of the training step gradcheck computes in) and positions', () => {
    const graph = layer([2, 3, 4], (b, x) =>
      transformerBlock(b, positionalEmbedding(b, x, { name: 'p' }), {
        name: 't',
        heads: 2,
        hidden: 6,
        dropout: 0.3,
        causal: true,
      }),
    );
    const feeds = { x: new Rng(12).uniformTensor([2, 3, 4], -1, 1, 'float64') };
    const wrt = ['x', 'p.table', 't.ln1.g', 't.attn.q.w', 't.mlp.0.w', 't.mlp.1.b'];
    const report = gradcheck(graph, { loss: 'out', wrt, feeds, params: randomParams(graph, 7), ...TOL });
    expect(report.failures).toEqual([]);
    expect(report.checked).toBeGreaterThan(50);
  });
});

describe('a transformer classifier with dropout on the runtime: bitwise equal to referenceStep', () => {
  const graph = transformerClassifier({
    vocab: 7,
    length: 4,
    dim: 8,
    heads: 2,
    layers: 2,
    classes: 3,
    causal: true,
    dropout: 0.2,
  });
  const params = initParams(graph, 3);
  const rng = new Rng(13);
  const feeds = {
    x: tensor(
      Array.from({ length: 10 * 4 }, () => rng.int(7)),
      { shape: [10, 4] },
    ),
    y: tensor(Array.from({ length: 10 }, () => rng.int(3))),
  };
  it.each([
    ['in-process', 'per-node', 4, 2],
    ['in-process', 'stages', 3, 1],
    ['threads', 'stages', 2, 2],
  ] as const)('%s, %s, %i workers, %i replicas', async (mode, placement, workers, replicas) => {
    await expectMatchesReference(graph, params, feeds, {
      mode,
      workers,
      replicas,
      placement,
      microbatches: 2,
    });
  });
});
