// The reference engine (valueAndGrad, evaluate) against gradients computed by hand in closed form.
import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { planGradient } from '../../src/autodiff/plan.ts';
import { GradientError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { eager } from '../../src/ops/eager.ts';
import type { OpDef } from '../../src/ops/op.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { bytesPerElement, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectRelativelyClose } from '../support/expect.ts';

const rng = new Rng(11);
const f64 = (shape: number[], low = -1, high = 1) => rng.uniformTensor(shape, low, high, 'float64');

/** Row-major [m, n] helpers for the hand computations. */
const at = (t: Tensor, i: number, j: number) => t.data[i * t.shape[1]! + j]!;

describe('valueAndGrad against closed forms', () => {
  it('sum(tanh(w) * x): grad = (1 - tanh(w)^2) x', () => {
    const b = new GraphBuilder();
    const w = b.param('w', [5], { dtype: 'float64' });
    const x = b.input('x', [5], 'float64');
    b.output('loss', b.sum(b.mul(b.tanh(w), x)));
    const [wv, xv] = [f64([5]), f64([5])];
    const { value, grads } = valueAndGrad(b.build(), { loss: 'loss' })({ x: xv }, { w: wv });
    let loss = 0;
    const expected = Array.from({ length: 5 }, (_, i) => {
      const t = Math.tanh(wv.data[i]!);
      loss += t * xv.data[i]!;
      return (1 - t * t) * xv.data[i]!;
    });
    expect(value.item()).toBeCloseTo(loss, 12);
    expectRelativelyClose(grads['w']!, expected, [5]);
  });

  it('fan-out: w used three times, sum(w * w + exp(w)): grad = 2w + exp(w)', () => {
    const b = new GraphBuilder();
    const w = b.param('w', [4], { dtype: 'float64' });
    b.output('loss', b.sum(b.add(b.mul(w, w), b.exp(w))));
    const wv = f64([4]);
    const { grads } = valueAndGrad(b.build(), { loss: 'loss' })({}, { w: wv });
    expectRelativelyClose(
      grads['w']!,
      Array.from(wv.data, (v) => 2 * v + Math.exp(v)),
      [4],
    );
  });

  it('a shared sub-expression s = w x: sum(s * s + tanh(s)) gives (2s + 1 - tanh(s)^2) x', () => {
    const b = new GraphBuilder();
    const w = b.param('w', [6], { dtype: 'float64' });
    const x = b.input('x', [6], 'float64');
    const s = b.mul(w, x);
    b.output('loss', b.sum(b.add(b.mul(s, s), b.tanh(s))));
    const [wv, xv] = [f64([6]), f64([6])];
    const { grads } = valueAndGrad(b.build(), { loss: 'loss' })({ x: xv }, { w: wv });
    expectRelativelyClose(
      grads['w']!,
      Array.from(wv.data, (v, i) => {
        const si = v * xv.data[i]!;
        return (2 * si + 1 - Math.tanh(si) ** 2) * xv.data[i]!;
      }),
      [6],
    );
    // The gradient of the input too: the same rule with w and x swapped.
    const both = valueAndGrad(b.build(), { loss: 'loss', wrt: ['w', 'x'] })({ x: xv }, { w: wv });
    expectRelativelyClose(
      both.grads['x']!,
      Array.from(xv.data, (v, i) => {
        const si = v * wv.data[i]!;
        return (2 * si + 1 - Math.tanh(si) ** 2) * wv.data[i]!;
      }),
      [6],
    );
  });

  it('a broadcast bias: sum((X W + b)^2) gives dW = X^T 2Z and db = column sums of 2Z', () => {
    const [m, k, n] = [3, 4, 2];
    const b = new GraphBuilder();
    const X = b.input('X', [m, k], 'float64');
    const W = b.param('W', [k, n], { dtype: 'float64' });
    const bias = b.param('b', [n], { dtype: 'float64' });
    b.output('loss', b.sum(b.square(b.add(b.matmul(X, W), bias))));
    const [Xv, Wv, bv] = [f64([m, k]), f64([k, n]), f64([n])];
    const { grads } = valueAndGrad(b.build(), { loss: 'loss' })({ X: Xv }, { W: Wv, b: bv });
    const Z = (i: number, j: number) => {
      let z = bv.data[j]!;
      for (let p = 0; p < k; p++) z += at(Xv, i, p) * at(Wv, p, j);
      return z;
    };
    const dW: number[] = [];
    for (let p = 0; p < k; p++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let i = 0; i < m; i++) s += at(Xv, i, p) * 2 * Z(i, j);
        dW.push(s);
      }
    const db = Array.from({ length: n }, (_, j) => {
      let s = 0;
      for (let i = 0; i < m; i++) s += 2 * Z(i, j);
      return s;
    });
    expectRelativelyClose(grads['W']!, dW, [k, n]);
    expectRelativelyClose(grads['b']!, db, [n]);
  });

  it("a symbolic batch dimension 'B': one function, fed batches of 2 and 5", () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3], 'float64');
    const w = b.param('w', [3, 1], { dtype: 'float64' });
    const c = b.param('c', [1], { dtype: 'float64' });
    b.output('loss', b.mean(b.square(b.add(b.matmul(x, w), c))));
    const fn = valueAndGrad(b.build(), { loss: 'loss' });
    const [wv, cv] = [f64([3, 1]), f64([1])];
    for (const batch of [2, 5]) {
      const xv = f64([batch, 3]);
      const { value, grads } = fn({ x: xv }, { w: wv, c: cv });
      // loss = (1/B) sum_i r_i^2 with r = x w + c: dw = (2/B) x^T r, dc = (2/B) sum r.
      const r = Array.from(
        { length: batch },
        (_, i) =>
          at(xv, i, 0) * wv.data[0]! + at(xv, i, 1) * wv.data[1]! + at(xv, i, 2) * wv.data[2]! + cv.data[0]!,
      );
      expect(value.item()).toBeCloseTo(r.reduce((s, v) => s + v * v, 0) / batch, 12);
      const dw = [0, 1, 2].map((p) => (2 / batch) * r.reduce((s, v, i) => s + at(xv, i, p) * v, 0));
      expectRelativelyClose(grads['w']!, dw, [3, 1]);
      expectRelativelyClose(grads['c']!, [(2 / batch) * r.reduce((s, v) => s + v, 0)], [1]);
    }
  });
});

// Ops that report being run: registered once for this file (a name can be registered only once).
const calls = { forward: 0, vjp: 0 };
const countingIdentity: OpDef = {
  name: 'test.countingIdentity',
  arity: 1,
  saves: { inputs: 'none', output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => {
    calls.forward++;
    return eager.neg(eager.neg(x!));
  },
  vjp: (_o, { g }) => {
    calls.vjp++;
    return [g];
  },
};
const explode: OpDef = {
  name: 'test.explode',
  arity: 1,
  saves: { inputs: 'none', output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: () => {
    throw new Error('test.explode must never run');
  },
  vjp: () => {
    throw new Error('the VJP of test.explode must never run');
  },
};
defineOp(countingIdentity);
defineOp(explode);

describe('only the needed subgraph is computed', () => {
  function graph() {
    const b = new GraphBuilder();
    const w = b.param('w', [3], { dtype: 'float64' });
    const shared = b.apply('test.countingIdentity', [w]);
    // The loss reads `shared` three times; an unrelated branch explodes and another counts.
    b.output('loss', b.sum(b.add(b.mul(shared, shared), shared)));
    b.output('unrelated', b.sum(b.apply('test.explode', [b.apply('test.countingIdentity', [b.exp(w)])])));
    return b.build();
  }

  it('valueAndGrad runs each needed node once (forward and VJP) and never the unrelated branch', () => {
    calls.forward = calls.vjp = 0;
    const wv = f64([3]);
    const { grads } = valueAndGrad(graph(), { loss: 'loss' })({}, { w: wv });
    expect(calls).toEqual({ forward: 1, vjp: 1 });
    expectRelativelyClose(
      grads['w']!,
      Array.from(wv.data, (v) => 2 * v + 1),
      [3],
    );
  });

  it('evaluate computes only what the outputs asked for need', () => {
    calls.forward = calls.vjp = 0;
    const out = evaluate(graph(), {}, { w: f64([3]) }, ['loss']);
    expect(Object.keys(out)).toEqual(['loss']);
    expect(calls).toEqual({ forward: 1, vjp: 0 });
    expect(() => evaluate(graph(), {}, { w: f64([3]) })).toThrow('test.explode must never run');
  });
});

describe('peakBytes', () => {
  const [n, size] = [200, 1000];
  const scalarBytes = bytesPerElement('float64');
  const valueBytes = size * scalarBytes;

  it('a long chain whose VJPs keep nothing frees every value: a peak of 2 values, not 2n', () => {
    // x_{k+1} = -(x_k + 1): add and neg keep nothing for their backward.
    const b = new GraphBuilder();
    let x = b.param('w', [size], { dtype: 'float64' });
    const one = b.constant(1, 'float64');
    for (let k = 0; k < n; k++) x = b.neg(b.add(x, one));
    b.output('loss', b.sum(x));
    const graph = b.build();
    const { value, grads, peakBytes } = valueAndGrad(graph, { loss: 'loss' })({}, { w: f64([size]) });
    expect(Array.from(grads['w']!.data)).toEqual(new Array(size).fill(1)); // (-1)^200
    expect(value.rank).toBe(0);
    // Every intermediate value of the chain, were they all kept: 2n of them.
    const total = graph.nodes.filter((node) => node.shape.length === 1).length * valueBytes;
    expect(total).toBe((2 * n + 1) * valueBytes);
    // Live at once: a node's input and output in the forward, or a node's gradient and the
    // contribution its VJP sends in the backward; plus scalars (the constant, the loss, the seed).
    expect(peakBytes).toBeGreaterThanOrEqual(2 * valueBytes);
    expect(peakBytes).toBeLessThanOrEqual(2 * valueBytes + 3 * scalarBytes);
    expect(peakBytes * n).toBeLessThan(total);
  });

  it('a chain whose VJPs read their outputs holds exactly those outputs until the backward', () => {
    const b = new GraphBuilder();
    let x = b.param('w', [size], { dtype: 'float64' });
    for (let k = 0; k < n; k++) x = b.tanh(x);
    b.output('loss', b.sum(x));
    const { peakBytes } = valueAndGrad(b.build(), { loss: 'loss' })({}, { w: f64([size]) });
    // The parameter and all n outputs are held; the backward adds a gradient and a contribution
    // while it frees the outputs one by one.
    expect(peakBytes).toBeGreaterThanOrEqual((n + 1) * valueBytes);
    expect(peakBytes).toBeLessThanOrEqual((n + 2) * valueBytes + 3 * scalarBytes);
  });
});

describe('parameters no gradient reaches', () => {
  it('a parameter not connected to the loss: a zero gradient and exactly one warning naming it', () => {
    const b = new GraphBuilder();
    const a = b.param('a', [2], { dtype: 'float64' });
    const unused = b.param('unusedWeight', [3, 2], { dtype: 'float64' });
    b.output('loss', b.sum(b.mul(a, a)));
    b.output('other', b.sum(unused));
    const warnings: string[] = [];
    const fn = valueAndGrad(b.build(), { loss: 'loss', onWarning: (m) => warnings.push(m) });
    const av = f64([2]);
    for (let call = 0; call < 2; call++) {
      const { grads } = fn({}, { a: av, unusedWeight: f64([3, 2]) });
      expect(grads['unusedWeight']!.shape).toEqual([3, 2]);
      expect(Array.from(grads['unusedWeight']!.data)).toEqual([0, 0, 0, 0, 0, 0]);
      expectRelativelyClose(
        grads['a']!,
        Array.from(av.data, (v) => 2 * v),
        [2],
      );
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('unusedWeight');
    expect(warnings[0]).toContain('loss');
  });

  it('a parameter reaching the loss only through sign and greater: zero gradient, one warning', () => {
    const b = new GraphBuilder();
    const a = b.param('a', [3], { dtype: 'float64' });
    const c = b.param('c', [3], { dtype: 'float64' });
    const flat = b.add(b.sign(c), b.greater(c, 0));
    b.output('loss', b.sum(b.mul(b.add(a, flat), a)));
    const warnings: string[] = [];
    const [av, cv] = [f64([3]), tensor([-0.5, 0.25, 2], { dtype: 'float64' })];
    const { grads } = valueAndGrad(b.build(), { loss: 'loss', onWarning: (m) => warnings.push(m) })(
      {},
      { a: av, c: cv },
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/\bc\b.*not connected/);
    expect(Array.from(grads['c']!.data)).toEqual([0, 0, 0]);
    // d/da sum((a + s) a) = 2a + s, with s = sign(c) + (c > 0).
    expectRelativelyClose(grads['a']!, [2 * av.data[0]! - 1, 2 * av.data[1]! + 2, 2 * av.data[2]! + 2], [3]);
  });
  it('a parameter whose every path to the loss ends in greater or stopGradient: zero, one warning', () => {
    // w -> tanh -> greater -> loss: tanh is downstream of w but no gradient reaches it, so nothing
    // may wait for one (an actor would wait forever).
    const b = new GraphBuilder();
    const a = b.param('a', [2], { dtype: 'float64' });
    const w = b.param('w', [2], { dtype: 'float64' });
    const t = b.tanh(w);
    b.output('loss', b.sum(b.add(b.mul(a, b.greater(t, 0)), b.stopGradient(b.exp(t)))));
    const graph = b.build();
    const plan = planGradient(graph, 'loss', ['a', 'w']);
    expect(plan.needsGrad[t.id]).toBe(0);
    expect(plan.expected[w.id]).toBe(0);
    expect(plan.disconnected).toEqual([w.id]);
    for (let id = 0; id < graph.size; id++)
      if (plan.needsGrad[id] === 1 && id !== plan.loss) expect(plan.expected[id]).toBeGreaterThan(0);
    const warnings: string[] = [];
    const wv = tensor([0.5, -0.5], { dtype: 'float64' });
    const { grads } = valueAndGrad(graph, { loss: 'loss', onWarning: (m) => warnings.push(m) })(
      {},
      { a: f64([2]), w: wv },
    );
    expect(warnings).toEqual([expect.stringContaining('w is not connected')]);
    expect(Array.from(grads['w']!.data)).toEqual([0, 0]);
    expect(Array.from(grads['a']!.data)).toEqual([1, 0]);
  });
});

describe('a non-scalar loss', () => {
  function graph() {
    const b = new GraphBuilder();
    const x = b.input('x', [2, 3], 'float64');
    const W = b.param('W', [3, 4], { dtype: 'float64' });
    b.output('out', b.tanh(b.matmul(x, W)));
    return b.build();
  }
  const [xv, Wv] = [f64([2, 3]), f64([3, 4])];

  it('without a seed is a GradientError naming the loss and its shape', () => {
    const fn = valueAndGrad(graph(), { loss: 'out' });
    expect(() => fn({ x: xv }, { W: Wv })).toThrow(GradientError);
    expect(() => fn({ x: xv }, { W: Wv })).toThrow(/\[2,4\].*seed/);
  });

  it('with a seed S is the VJP by hand: dW = x^T (S * (1 - out^2))', () => {
    const seed = f64([2, 4]);
    const { value, grads } = valueAndGrad(graph(), { loss: 'out' })({ x: xv }, { W: Wv }, { seed });
    expect(value.shape).toEqual([2, 4]);
    const dW: number[] = [];
    for (let p = 0; p < 3; p++)
      for (let j = 0; j < 4; j++) {
        let s = 0;
        for (let i = 0; i < 2; i++) {
          let z = 0;
          for (let q = 0; q < 3; q++) z += at(xv, i, q) * at(Wv, q, j);
          s += at(xv, i, p) * at(seed, i, j) * (1 - Math.tanh(z) ** 2);
        }
        dW.push(s);
      }
    expectRelativelyClose(grads['W']!, dW, [3, 4]);
  });
});
