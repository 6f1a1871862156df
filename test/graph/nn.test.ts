import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { gradcheck } from '../../src/autodiff/gradcheck.ts';
import { InputError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { causalMask, conv2d, dense, embedding, layerNorm, mlp } from '../../src/graph/nn.ts';
import { initParams } from '../../src/graph/params.ts';
import { Rng } from '../../src/tensor/rng.ts';
import type { Shape } from '../../src/tensor/shape.ts';
import { type Tensor, tensor } from '../../src/tensor/tensor.ts';

const t64 = (values: readonly unknown[]) => tensor(values as number[], { dtype: 'float64' });
/** Each parameter's shape and initializer, by name, in node order. */
const paramsOf = (graph: Graph): Record<string, { shape: Shape; init: unknown }> =>
  Object.fromEntries(graph.params().map((p) => [p.name!, { shape: p.shape, init: p.attrs.init }]));

/** A graph with input x of `shape` and output `out` = layer(x). */
function layer(
  shape: (number | string)[],
  f: (b: GraphBuilder, x: Node) => Node,
  dtype: 'float32' | 'float64' = 'float32',
) {
  const b = new GraphBuilder();
  b.output('out', f(b, b.input('x', shape, dtype)));
  return b.build();
}

describe('dense', () => {
  it('creates [in, units] weights and [units] biases, and keeps leading dimensions', () => {
    const graph = layer(['B', 4], (b, x) => dense(b, x, 3, { name: 'fc', activation: 'tanh' }));
    expect(paramsOf(graph)).toEqual({
      'fc.w': { shape: [4, 3], init: { kind: 'glorotUniform' } },
      'fc.b': { shape: [3], init: { kind: 'zeros' } },
    });
    expect(graph.node('out')).toMatchObject({ op: 'tanh', shape: ['B', 3], dtype: 'float32' });
    const seq = layer([2, 5, 4], (b, x) => dense(b, x, 3, { name: 'fc' }));
    expect(seq.node('out')).toMatchObject({ op: 'add', shape: [2, 5, 3] });
  });

  it('uses He normal before a relu, honours init and bias: false', () => {
    const relu = layer(['B', 4], (b, x) => dense(b, x, 2, { name: 'r', activation: 'relu' }));
    expect(paramsOf(relu)['r.w']!.init).toEqual({ kind: 'heNormal' });
    const plain = layer(['B', 4], (b, x) =>
      dense(b, x, 2, { name: 'p', bias: false, init: { kind: 'ones' } }),
    );
    expect(paramsOf(plain)).toEqual({ 'p.w': { shape: [4, 2], init: { kind: 'ones' } } });
    expect(plain.node('out').op).toBe('matmul');
  });

  it('computes activation(x w + b)', () => {
    const graph = layer(['B', 2], (b, x) => dense(b, x, 2, { name: 'fc', activation: 'relu' }), 'float64');
    const x = t64([
      [1, 2],
      [-1, 0.5],
    ]);
    const params = {
      'fc.w': t64([
        [1, -1],
        [0.5, 2],
      ]),
      'fc.b': t64([0.25, -1]),
    };
    // x w = [[2, 3], [-0.75, 2]]; + b = [[2.25, 2], [-0.5, 1]]; relu.
    expect(Array.from(evaluate(graph, { x }, params)['out']!.data)).toEqual([2.25, 2, 0, 1]);
  });

  it('refuses a vector input or a symbolic feature axis', () => {
    expect(() => layer([4], (b, x) => dense(b, x, 2, { name: 'v' }))).toThrow(ShapeError);
    expect(() => layer([2, 'F'], (b, x) => dense(b, x, 2, { name: 's' }))).toThrow(
      /axis 1 .* must be a number/,
    );
    expect(() =>
      layer([2, 3], (b, x) => dense(b, x, 2, { name: 'a', activation: 'swish' as 'relu' })),
    ).toThrow(InputError);
  });
});

describe('layerNorm', () => {
  const rows = t64([
    [1, 2, 3, 4],
    [-3, 10, 0.5, 7],
    [100, 100.5, 99, 101],
  ]);

  it('creates a gain of ones and a bias of zeros of the normalized size', () => {
    const graph = layer(['B', 4], (b, x) => layerNorm(b, x, { name: 'ln' }));
    expect(paramsOf(graph)).toEqual({
      'ln.g': { shape: [4], init: { kind: 'ones' } },
      'ln.b': { shape: [4], init: { kind: 'zeros' } },
    });
    expect(graph.node('out').shape).toEqual(['B', 4]);
    const init = initParams(graph, 1);
    expect(Array.from(init['ln.g']!.data)).toEqual([1, 1, 1, 1]);
    expect(Array.from(init['ln.b']!.data)).toEqual([0, 0, 0, 0]);
  });

  it('gives each row zero mean and variance v / (v + eps)', () => {
    const eps = 1e-5;
    const graph = layer(['B', 4], (b, x) => layerNorm(b, x, { name: 'ln', eps }), 'float64');
    const params = { 'ln.g': t64([1, 1, 1, 1]), 'ln.b': t64([0, 0, 0, 0]) };
    const out = evaluate(graph, { x: rows }, params)['out']!;
    for (let r = 0; r < 3; r++) {
      const x = Array.from(rows.data.subarray(4 * r, 4 * r + 4));
      const y = Array.from(out.data.subarray(4 * r, 4 * r + 4));
      const mu = x.reduce((a, v) => a + v, 0) / 4;
      const v = x.reduce((a, xi) => a + (xi - mu) ** 2, 0) / 4;
      for (const [i, yi] of y.entries()) expect(yi).toBeCloseTo((x[i]! - mu) / Math.sqrt(v + eps), 12);
      expect(y.reduce((a, yi) => a + yi, 0) / 4).toBeCloseTo(0, 13);
      expect(y.reduce((a, yi) => a + yi * yi, 0) / 4).toBeCloseTo(v / (v + eps), 12);
    }
  });

  it('applies gain and bias, along a non-last axis too', () => {
    const graph = layer([4, 3], (b, x) => layerNorm(b, x, { name: 'ln', axis: 0, eps: 0 }), 'float64');
    expect(graph.node('ln.g').shape).toEqual([4]);
    // Columns of the transpose of `rows`; gain 2 and bias 1 on every position of axis 0 but the last.
    const x = t64([
      [1, -3, 100],
      [2, 10, 100.5],
      [3, 0.5, 99],
      [4, 7, 101],
    ]);
    const out = evaluate(graph, { x }, { 'ln.g': t64([2, 2, 2, 1]), 'ln.b': t64([1, 1, 1, 0]) })['out']!;
    // Column 0 is [1,2,3,4]: mean 2.5, variance 1.25.
    const s = Math.sqrt(1.25);
    expect(out.data[0]).toBeCloseTo((2 * -1.5) / s + 1, 12);
    expect(out.data[3]).toBeCloseTo((2 * -0.5) / s + 1, 12);
    expect(out.data[9]).toBeCloseTo(1.5 / s, 12);
  });
});

describe('mlp and embedding', () => {
  it('mlp names its layers and is linear at the end', () => {
    const graph = layer(['B', 5], (b, x) => mlp(b, x, [8, 4, 2], { name: 'net', activation: 'gelu' }));
    expect(Object.entries(paramsOf(graph)).map(([n, p]) => [n, p.shape])).toEqual([
      ['net.0.w', [5, 8]],
      ['net.0.b', [8]],
      ['net.1.w', [8, 4]],
      ['net.1.b', [4]],
      ['net.2.w', [4, 2]],
      ['net.2.b', [2]],
    ]);
    expect(graph.nodes.filter((n) => n.op === 'gelu')).toHaveLength(2);
    expect(graph.node('out')).toMatchObject({ op: 'add', shape: ['B', 2] });
    expect(() => layer(['B', 5], (b, x) => mlp(b, x, [], { name: 'none' }))).toThrow(InputError);
  });

  it('embedding looks rows up from a [vocab, dim] table', () => {
    const graph = layer(['B', 'T'], (b, i) => embedding(b, i, 5, 3, { name: 'emb' }), 'float64');
    expect(paramsOf(graph)).toEqual({
      'emb.table': { shape: [5, 3], init: { kind: 'normal', mean: 0, std: 1 } },
    });
    expect(graph.node('out').shape).toEqual(['B', 'T', 3]);
    const table = tensor(
      Array.from({ length: 15 }, (_, i) => i),
      { shape: [5, 3], dtype: 'float64' },
    );
    const out = evaluate(graph, { x: t64([[4, 0]]) }, { 'emb.table': table })['out']!;
    expect(out.shape).toEqual([1, 2, 3]);
    expect(Array.from(out.data)).toEqual([12, 13, 14, 0, 1, 2]);
  });
});

describe('conv2d and causalMask', () => {
  it('conv2d creates an HWIO filter and a bias, He normal over KH*KW*C/groups before a relu', () => {
    const graph = layer(['B', 8, 8, 4], (b, x) =>
      conv2d(b, x, 6, 3, { name: 'c', activation: 'relu', padding: 1, stride: 2, groups: 2 }),
    );
    expect(paramsOf(graph)).toEqual({
      'c.w': { shape: [3, 3, 2, 6], init: { kind: 'normal', mean: 0, std: Math.sqrt(2 / 18) } },
      'c.b': { shape: [6], init: { kind: 'zeros' } },
    });
    expect(graph.node('out')).toMatchObject({ op: 'relu', shape: ['B', 4, 4, 6] });
    const glorot = layer([1, 5, 5, 1], (b, x) => conv2d(b, x, 2, [3, 1], { name: 'g', bias: false }));
    const limit = Math.sqrt(6 / (3 + 6));
    expect(paramsOf(glorot)).toEqual({
      'g.w': { shape: [3, 1, 1, 2], init: { kind: 'uniform', low: -limit, high: limit } },
    });
    expect(glorot.node('out')).toMatchObject({ op: 'conv2d', shape: [1, 3, 5, 2] });
  });

  it('conv2d refuses a flat input, a symbolic channel axis and channels the groups do not split', () => {
    expect(() => layer(['B', 4], (b, x) => conv2d(b, x, 2, 1, { name: 'c' }))).toThrow(
      /conv2d 'c': input has shape \[B,4\], expected an NHWC image/,
    );
    expect(() => layer([1, 4, 4, 'C'], (b, x) => conv2d(b, x, 2, 1, { name: 'c' }))).toThrow(ShapeError);
    expect(() => layer([1, 4, 4, 3], (b, x) => conv2d(b, x, 2, 1, { name: 'c', groups: 2 }))).toThrow(
      /conv2d 'c': 3 channels and 2 filters do not split into 2 groups/,
    );
  });

  it('causalMask is lower-triangular; through where and softmax no query sees a later key', () => {
    const b = new GraphBuilder();
    const scores = b.input('scores', [2, 3, 3], 'float64');
    const mask = causalMask(b, 3, 'float64');
    b.output('mask', mask);
    b.output('weights', b.softmax(b.where(mask, scores, -1e9)));
    const scoresValue = new Rng(3).uniformTensor([2, 3, 3], -1, 1, 'float64');
    const out = evaluate(b.build(), { scores: scoresValue }, {}, ['mask', 'weights']);
    expect(Array.from(out.mask!.data)).toEqual([1, 0, 0, 1, 1, 0, 1, 1, 1]);
    const weights = out.weights!.data;
    for (let i = 0; i < 18; i++) if (i % 3 > Math.floor(i / 3) % 3) expect(weights[i]).toBe(0);
    expect(weights[0]).toBe(1);
    expect(() => causalMask(b, 0)).toThrow(InputError);
  });
});

describe('gradcheck through the layers', () => {
  const TOL = { atol: 1e-6, rtol: 1e-5 };
  const rng = new Rng(5);
  const check = (graph: Graph, feeds: Record<string, Tensor>, wrt: string[]) => {
    // Random values for every parameter: gains and biases away from their initial ones and zero.
    const params = Object.fromEntries(
      graph.params().map((p) => [p.name!, rng.uniformTensor(p.shape as number[], 0.5, 1.5, 'float64')]),
    );
    const report = gradcheck(graph, { loss: 'out', wrt, feeds, params, ...TOL });
    expect(report.failures).toEqual([]);
    expect(report.checked).toBeGreaterThan(0);
  };

  it.each(['tanh', 'gelu', 'sigmoid', null] as const)('dense with activation %s', (activation) => {
    const graph = layer([3, 4], (b, x) => dense(b, x, 2, { name: 'fc', activation }), 'float64');
    check(graph, { x: rng.uniformTensor([3, 4], -1, 1, 'float64') }, ['x', 'fc.w', 'fc.b']);
  });

  it.each([-1, 0])('layerNorm over axis %d', (axis) => {
    const graph = layer([3, 4], (b, x) => layerNorm(b, x, { name: 'ln', axis }), 'float64');
    check(graph, { x: rng.uniformTensor([3, 4], -1, 1, 'float64') }, ['x', 'ln.g', 'ln.b']);
  });

  it('an mlp on a layerNorm, and an embedding', () => {
    const net = layer(
      [2, 3],
      (b, x) => mlp(b, layerNorm(b, x, { name: 'ln' }), [4, 2], { name: 'm', activation: 'tanh' }),
      'float64',
    );
    check(net, { x: rng.uniformTensor([2, 3], -1, 1, 'float64') }, ['x', 'ln.g', 'm.0.w', 'm.1.b']);
    const emb = layer([4], (b, i) => embedding(b, i, 3, 2, { name: 'e' }), 'float64');
    check(emb, { x: t64([2, 0, 2, 1]) }, ['e.table']);
  });

  it('conv2d layers with a tanh, strided and grouped', () => {
    const graph = layer(
      [2, 5, 5, 2],
      (b, x) =>
        conv2d(b, conv2d(b, x, 4, 3, { name: 'c1', activation: 'tanh', padding: 1 }), 2, 2, {
          name: 'c2',
          stride: 2,
          groups: 2,
        }),
      'float64',
    );
    check(graph, { x: rng.uniformTensor([2, 5, 5, 2], -1, 1, 'float64') }, ['x', 'c1.w', 'c1.b', 'c2.w']);
  });
});
