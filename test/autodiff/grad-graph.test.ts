// Symbol-to-symbol differentiation: G+B evaluated equals the reference engine bit for bit, and
// differentiating it again gives second derivatives (checked against central differences in float64).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import type { TensorMap } from '../../src/autodiff/forward.ts';
import { gradGraph, hvp } from '../../src/autodiff/grad-graph.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { printGraph } from '../../src/graph/print.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type DType, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

const silent = { onWarning: () => {} };

/** valueAndGrad and evaluate(gradGraph) on the same values: loss and every gradient bit for bit. */
function expectBitwiseSame(graph: Graph, feeds: TensorMap, params: TensorMap) {
  const reference = valueAndGrad(graph, { loss: 'loss', ...silent })(feeds, params);
  const gg = gradGraph(graph, { loss: 'loss', ...silent });
  const out = evaluate(gg, feeds, params);
  expectBitwise(out['loss']!, reference.value);
  for (const [name, g] of Object.entries(reference.grads))
    expectBitwise(out[`grad:${name}`]!, g, `grad:${name} (gradGraph vs valueAndGrad)`);
  return { gg, reference };
}

// Random DAGs over f[3,4] values: each step applies one op to earlier nodes picked by index, so
// nodes fan out to several consumers and sub-expressions are shared. Shape-changing ops come back
// to [3,4] (matmul by a [4,4] weight, reductions broadcast back against another node).
type Step = { kind: keyof typeof STEPS; a: number; b: number; c: number };
const STEPS = {
  tanh: (b: GraphBuilder, x: Node) => b.tanh(x),
  sigmoid: (b: GraphBuilder, x: Node) => b.sigmoid(x),
  neg: (b: GraphBuilder, x: Node) => b.neg(x),
  square: (b: GraphBuilder, x: Node) => b.square(x),
  expTanh: (b: GraphBuilder, x: Node) => b.exp(b.tanh(x)),
  relu: (b: GraphBuilder, x: Node) => b.relu(x),
  add: (b: GraphBuilder, x: Node, y: Node) => b.add(x, y),
  sub: (b: GraphBuilder, x: Node, y: Node) => b.sub(x, y),
  mul: (b: GraphBuilder, x: Node, y: Node) => b.mul(x, y),
  safeDiv: (b: GraphBuilder, x: Node, y: Node) => b.div(x, b.add(b.square(y), 1)),
  maximum: (b: GraphBuilder, x: Node, y: Node) => b.maximum(x, y),
  minimum: (b: GraphBuilder, x: Node, y: Node) => b.minimum(x, y),
  matmulW: (b: GraphBuilder, x: Node) => b.matmul(x, b.node('M')),
  matmulNT: (b: GraphBuilder, x: Node, y: Node, z: Node) => b.matmul(b.matmul(x, y, { transB: true }), z),
  rowSum: (b: GraphBuilder, x: Node, y: Node) => b.add(y, b.sum(x, 1, true)),
  colMean: (b: GraphBuilder, x: Node, y: Node) => b.mul(y, b.mean(x, 0)),
  rowMax: (b: GraphBuilder, x: Node, y: Node) => b.sub(y, b.max(x, 1, true)),
  bias: (b: GraphBuilder, x: Node) => b.add(x, b.node('bias')),
};
const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom(...(Object.keys(STEPS) as (keyof typeof STEPS)[])),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
});

function randomGraph(steps: readonly Step[], last: number, dtype: DType): Graph {
  const b = new GraphBuilder();
  const pool: Node[] = [
    b.input('x', [3, 4], dtype),
    b.param('w1', [3, 4], { dtype }),
    b.param('w2', [3, 4], { dtype }),
  ];
  b.param('M', [4, 4], { dtype });
  b.param('bias', [4], { dtype });
  const pick = (k: number) => pool[k % pool.length]!;
  // The first operand is one of the three newest nodes (so the graph is deep), the others anything.
  const recent = (k: number) => pool[pool.length - 1 - (k % Math.min(3, pool.length))]!;
  for (const s of steps) pool.push(STEPS[s.kind](b, recent(s.a), pick(s.b), pick(s.c)));
  // The final scalar reduction reads the newest node and one more, picked at random.
  b.output('loss', b.sum(b.add(pool[pool.length - 1]!, pick(last))));
  return b.build();
}

function randomValues(graph: Graph, seed: number, dtype: DType) {
  const rng = new Rng(seed);
  const params: Record<string, Tensor> = {};
  for (const p of graph.params()) params[p.name!] = rng.uniformTensor(p.shape as number[], -1, 1, dtype);
  return { feeds: { x: rng.uniformTensor([3, 4], -1, 1, dtype) }, params };
}

describe('gradGraph evaluates to valueAndGrad bit for bit', () => {
  it.each(['float32', 'float64'] as const)('random DAGs with fan-out (%s)', (dtype) => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 20 }),
        fc.nat(),
        fc.nat(),
        (steps, last, seed) => {
          const graph = randomGraph(steps, last, dtype);
          const { feeds, params } = randomValues(graph, seed, dtype);
          expectBitwiseSame(graph, feeds, params);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('an MLP with softmaxCrossEntropy and a symbolic batch', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 5]);
    const y = b.input('y', ['B']);
    const h = b.relu(
      b.add(b.matmul(x, b.param('W1', [5, 8])), b.param('b1', [8], { init: { kind: 'zeros' } })),
    );
    const logits = b.add(b.matmul(h, b.param('W2', [8, 3])), b.param('b2', [3], { init: { kind: 'zeros' } }));
    b.output('loss', b.softmaxCrossEntropy(logits, y));
    const graph = b.build();
    const rng = new Rng(3);
    const params: Record<string, Tensor> = {};
    for (const p of graph.params()) params[p.name!] = rng.uniformTensor(p.shape as number[], -1, 1);
    for (const batch of [1, 7]) {
      const feeds = {
        x: rng.uniformTensor([batch, 5], -2, 2),
        y: tensor(Array.from({ length: batch }, () => rng.int(3))),
      };
      const { reference } = expectBitwiseSame(graph, feeds, params);
      expect(Object.keys(reference.grads).sort()).toEqual(['W1', 'W2', 'b1', 'b2']);
    }
  });

  it('a parameter used in two places (tied weights)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2, 4]);
    const W = b.param('W', [4, 4]);
    const h = b.tanh(b.matmul(x, W));
    b.output('loss', b.sum(b.square(b.matmul(h, W, { transB: true }))));
    const graph = b.build();
    const rng = new Rng(5);
    expectBitwiseSame(
      graph,
      { x: rng.uniformTensor([2, 4], -1, 1) },
      { W: rng.uniformTensor([4, 4], -1, 1) },
    );
  });

  it('G+B is an ordinary graph: printable, with the loss and one grad output per parameter', () => {
    const b = new GraphBuilder();
    const w = b.param('w', [3]);
    b.output('loss', b.sum(b.mul(b.tanh(w), w)));
    const graph = b.build();
    const gg = gradGraph(graph, { loss: 'loss' });
    const printed = printGraph(gg);
    expect(printed.split('\n')).toHaveLength(gg.size + 1);
    expect(printed).toMatch(/^outputs: .*loss=%\d+.*grad:w=%\d+/m);
    // G's nodes come first, unchanged: B is appended.
    expect(gg.nodes.slice(0, graph.size)).toEqual(graph.nodes);
    const wv = tensor([0.5, -1, 2]);
    expect(evaluate(gg, {}, { w: wv }, ['grad:w'])['grad:w']!.shape).toEqual([3]);
  });
});

/** Central differences of a vector function of w (float64): J[i][j] = d f_i / d w_j. */
function jacobian(f: (w: Tensor) => Tensor, w: Tensor, eps = 1e-5): number[][] {
  const columns: number[][] = [];
  for (let j = 0; j < w.size; j++) {
    const plus = cast(w);
    const minus = cast(w);
    plus.data[j] = plus.data[j]! + eps;
    minus.data[j] = minus.data[j]! - eps;
    const [fp, fm] = [f(plus), f(minus)];
    columns.push(Array.from(fp.data, (v, i) => (v - fm.data[i]!) / (2 * eps)));
  }
  return columns[0]!.map((_, i) => columns.map((col) => col[i]!));
}

describe('second derivatives', () => {
  // f(w) = sum(tanh(w x) exp(w)) + (sum w)^2: mixed terms everywhere in the Hessian.
  function scalarFunction() {
    const b = new GraphBuilder();
    const w = b.param('w', [3], { dtype: 'float64' });
    const x = b.input('x', [3], 'float64');
    const s = b.sum(w);
    b.output('loss', b.add(b.sum(b.mul(b.tanh(b.mul(w, x)), b.exp(w))), b.mul(s, s)));
    return b.build();
  }
  const feeds = { x: tensor([0.7, -1.3, 0.4], { dtype: 'float64' }) };
  const w0 = tensor([0.2, -0.5, 0.9], { dtype: 'float64' });

  it('gradGraph of gradGraph matches central differences of the first derivatives', () => {
    const graph = scalarFunction();
    const first = gradGraph(graph, { loss: 'loss', wrt: ['w'] });
    const second = gradGraph(first, { loss: 'grad:w', wrt: ['w'], seed: 'input', prefix: 'h:' });
    const seedName = second.inputs().find((n) => n.name!.startsWith('seed:'))!.name!;
    const grad = valueAndGrad(graph, { loss: 'loss', wrt: ['w'] });
    const H = jacobian((w) => grad(feeds, { w }).grads['w']!, w0);
    for (let j = 0; j < 3; j++) {
      const seed = tensor(
        [0, 0, 0].map((_, i) => (i === j ? 1 : 0)),
        { dtype: 'float64' },
      );
      const row = evaluate(second, { ...feeds, [seedName]: seed }, { w: w0 }, ['h:w'])['h:w']!;
      for (let i = 0; i < 3; i++) expect(row.data[i]!).toBeCloseTo(H[j]![i]!, 6);
    }
    // The doubly differentiated graph still computes the first derivatives it was built from.
    const again = evaluate(
      second,
      { ...feeds, [seedName]: tensor([1, 0, 0], { dtype: 'float64' }) },
      { w: w0 },
    );
    expectBitwise(again['grad:w']!, grad(feeds, { w: w0 }).grads['w']!);
  });

  it('hvp of sum(tanh(X w))^2 equals the Hessian from central differences of gradients, times v', () => {
    const b = new GraphBuilder();
    const X = b.input('X', [5, 3], 'float64');
    const w = b.param('w', [3, 1], { dtype: 'float64' });
    b.output('loss', b.square(b.sum(b.tanh(b.matmul(X, w)))));
    const graph = b.build();
    const rng = new Rng(9);
    const feeds = { X: rng.uniformTensor([5, 3], -1, 1, 'float64') };
    const wv = rng.uniformTensor([3, 1], -1, 1, 'float64');
    const grad = valueAndGrad(graph, { loss: 'loss' });
    const H = jacobian((p) => grad(feeds, { w: p }).grads['w']!, wv);
    const hv = hvp(graph, { loss: 'loss' });
    for (let trial = 0; trial < 3; trial++) {
      const v = rng.uniformTensor([3, 1], -1, 1, 'float64');
      const out = hv(feeds, { w: wv }, { w: v })['w']!;
      expect(out.shape).toEqual([3, 1]);
      for (let i = 0; i < 3; i++) {
        const expected = H[i]!.reduce((s, h, j) => s + h * v.data[j]!, 0);
        expect(out.data[i]!).toBeCloseTo(expected, 6);
      }
    }
  });

  it('hvp of the quadratic form 0.5 w^T A w is ((A + A^T) / 2) v exactly', () => {
    const A = tensor(
      [
        [2, -1, 3],
        [4, 0, -2],
        [1, 5, -3],
      ],
      { dtype: 'float64' },
    );
    const b = new GraphBuilder();
    const w = b.param('w', [3, 1], { dtype: 'float64' });
    b.output('loss', b.mul(b.sum(b.mul(w, b.matmul(b.const(A), w))), 0.5));
    const hv = hvp(b.build(), { loss: 'loss' });
    const at = (i: number, j: number) => A.data[i * 3 + j]!;
    for (const [wv, vv] of [
      [
        [1, -2, 3],
        [1, 0, 0],
      ],
      [
        [0.5, 7, -1],
        [2, -3, 1],
      ],
    ] as const) {
      const out = hv(
        {},
        { w: tensor(wv, { shape: [3, 1], dtype: 'float64' }) },
        {
          w: tensor(vv, { shape: [3, 1], dtype: 'float64' }),
        },
      )['w']!;
      const expected = [0, 1, 2].map((i) =>
        [0, 1, 2].reduce((s, j) => s + ((at(i, j) + at(j, i)) / 2) * vv[j]!, 0),
      );
      expect(Array.from(out.data)).toEqual(expected);
    }
  });
});
