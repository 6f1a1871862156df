// Forward values of every op against closed forms computed by hand, through the eager ops.
import { describe, expect, it } from 'vitest';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import { DTypeError, InputError, OpError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Node } from '../../src/graph/graph.ts';
import { eager } from '../../src/ops/eager.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { type DType, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { t64 } from './domains.ts';

const f32 = (values: number | readonly unknown[]) => t64(values, 'float32');
const values = (t: Tensor) => Array.from(t.data);
const arange = (n: number, shape: number[], dtype: DType = 'float64') =>
  tensor(
    Array.from({ length: n }, (_, i) => i),
    { shape, dtype },
  );

/** Checks shape and values (to `digits` decimals; NaN matches NaN). */
function expectTensor(t: Tensor, shape: number[], expected: number[], digits = 14): void {
  expect(t.shape).toEqual(shape);
  expect(t.size).toBe(expected.length);
  expected.forEach((v, i) => {
    if (Number.isNaN(v) || !Number.isFinite(v)) expect(t.data[i]).toBe(v);
    else expect(t.data[i]).toBeCloseTo(v, digits);
  });
}

/** The gradients of sum(f(x) * w) with respect to x (w defaults to ones) from the reference engine. */
function gradOf(x: Tensor, f: (b: GraphBuilder, x: Node) => Node): Tensor {
  const b = new GraphBuilder();
  const p = b.param('x', x.shape, { dtype: x.dtype });
  b.output('loss', b.sum(f(b, p)));
  return valueAndGrad(b.build(), { loss: 'loss' })({}, { x }).grads['x']!;
}

/** The textbook broadcast, one output index at a time: the oracle for the kernels' fast paths. */
function naiveBroadcast(a: Tensor, b: Tensor, f: (x: number, y: number) => number): number[] {
  const rank = Math.max(a.rank, b.rank);
  const pad = (s: readonly number[]) => [...Array(rank - s.length).fill(1), ...s] as number[];
  const [sa, sb] = [pad(a.shape), pad(b.shape)];
  const shape = sa.map((d, i) => Math.max(d, sb[i]!));
  const at = (t: Tensor, s: number[], idx: number[]) =>
    t.data[idx.reduce((off, v, d) => off * s[d]! + (s[d] === 1 ? 0 : v), 0)]!;
  const n = shape.reduce((p, d) => p * d, 1);
  return Array.from({ length: n }, (_, flat) => {
    const idx = shape.map(() => 0);
    for (let d = rank - 1, r = flat; d >= 0; d--, r = Math.floor(r / shape[d + 1]!)) idx[d] = r % shape[d]!;
    return f(at(a, sa, idx), at(b, sb, idx));
  });
}

describe('binary elementwise ops', () => {
  const a = t64([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  it('add, sub, mul, div broadcast a row', () => {
    const r = t64([10, 20, 30]);
    expectTensor(eager.add(a, r), [2, 3], [11, 22, 33, 14, 25, 36]);
    expectTensor(eager.sub(a, r), [2, 3], [-9, -18, -27, -6, -15, -24]);
    expectTensor(eager.mul(a, r), [2, 3], [10, 40, 90, 40, 100, 180]);
    expectTensor(eager.div(a, r), [2, 3], [0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
    expectTensor(eager.div(t64([1, -1, 0]), 0), [3], [Infinity, -Infinity, Number.NaN]);
  });

  it('numbers become scalars of the other operand dtype', () => {
    expect(eager.sub(1, f32([0.25])).dtype).toBe('float32');
    expectTensor(eager.sub(1, a), [2, 3], [0, -1, -2, -3, -4, -5]);
  });

  const shapes: { a: number[]; b: number[] }[] = [
    { a: [2, 3, 4], b: [3, 1] },
    { a: [2, 3, 4], b: [4] },
    { a: [2, 3, 4], b: [1, 4] },
    { a: [2, 3, 4], b: [2, 1, 4] },
    { a: [3, 1], b: [1, 4] },
    { a: [4], b: [2, 3, 4] },
    { a: [], b: [2, 3] },
    { a: [2, 3], b: [] },
    { a: [1, 3], b: [3, 3] },
    { a: [3, 3], b: [3, 1] },
    // The row layouts of the kernels (Note [row layouts]): a column either side, a tile of several
    // axes, a column with a row, and a column that is not one (it repeats over a leading axis).
    { a: [2, 3, 4], b: [2, 3, 1] },
    { a: [2, 3, 1], b: [2, 3, 4] },
    { a: [2, 3, 4], b: [1, 3, 4] },
    { a: [3, 4], b: [2, 3, 4] },
    { a: [2, 3, 1], b: [4] },
    { a: [1, 4], b: [2, 3, 1] },
    { a: [2, 3, 1], b: [] },
    { a: [1, 3, 1], b: [2, 3, 4] },
  ];
  const fns: Record<string, (x: number, y: number) => number> = {
    add: (x, y) => x + y,
    sub: (x, y) => x - y,
    mul: (x, y) => x * y,
    div: (x, y) => x / y,
    maximum: Math.max,
    minimum: Math.min,
    greater: (x, y) => Number(x > y),
    greaterEqual: (x, y) => Number(x >= y),
    equal: (x, y) => Number(x === y),
  };
  it.each(shapes)('$a with $b matches the textbook broadcast for every binary op', ({ a: sa, b: sb }) => {
    const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
    const x = tensor(
      Array.from({ length: size(sa) }, (_, i) => (i % 5) - 2),
      { shape: sa, dtype: 'float64' },
    );
    const y = tensor(
      Array.from({ length: size(sb) }, (_, i) => (i % 3) - 1 + 0.5 * (i % 2)),
      { shape: sb, dtype: 'float64' },
    );
    for (const [op, f] of Object.entries(fns)) {
      expect(values(eager.apply(op, [x, y])), op).toEqual(naiveBroadcast(x, y, f));
    }
  });

  it('maximum and minimum propagate NaN from either side', () => {
    const x = t64([Number.NaN, 1, 2]);
    const y = t64([1, Number.NaN, 3]);
    expectTensor(eager.maximum(x, y), [3], [Number.NaN, Number.NaN, 3]);
    expectTensor(eager.minimum(x, y), [3], [Number.NaN, Number.NaN, 2]);
  });

  it('comparisons give 1 or 0, and 0 for NaN', () => {
    const x = t64([1, 2, 3, Number.NaN]);
    expectTensor(eager.greater(x, 2), [4], [0, 0, 1, 0]);
    expectTensor(eager.greaterEqual(x, 2), [4], [0, 1, 1, 0]);
    expectTensor(eager.equal(x, 2), [4], [0, 1, 0, 0]);
  });

  it('maximum and minimum split the gradient evenly where the operands tie', () => {
    const x = t64([1, 2, 3]);
    expectTensor(
      gradOf(x, (b, p) => b.maximum(p, 2)),
      [3],
      [0, 0.5, 1],
    );
    expectTensor(
      gradOf(x, (b, p) => b.minimum(p, 2)),
      [3],
      [1, 0.5, 0],
    );
  });
});

describe('unary elementwise ops', () => {
  it('neg, exp, log, sqrt, square, abs, sign', () => {
    const x = t64([-2, 0, 0.5, 4]);
    expectTensor(eager.neg(x), [4], [2, -0, -0.5, -4]);
    expectTensor(eager.exp(x), [4], [Math.E ** -2, 1, Math.sqrt(Math.E), Math.E ** 4], 12);
    expectTensor(eager.log(t64([1, Math.E, 0, -1])), [4], [0, 1, -Infinity, Number.NaN]);
    expectTensor(eager.sqrt(t64([4, 2.25, 0])), [3], [2, 1.5, 0]);
    expectTensor(eager.square(x), [4], [4, 0, 0.25, 16]);
    expectTensor(eager.abs(x), [4], [2, 0, 0.5, 4]);
    expectTensor(eager.sign(x), [4], [-1, 0, 1, 1]);
  });

  it('pow with integer, fractional and negative exponents', () => {
    const x = t64([0.25, 4, -2]);
    expectTensor(eager.pow(x, 2), [3], [0.0625, 16, 4]);
    expectTensor(eager.pow(x, 3), [3], [0.015625, 64, -8]);
    expectTensor(eager.pow(t64([0.25, 4]), 0.5), [2], [0.5, 2]);
    expectTensor(eager.pow(x, -1), [3], [4, 0.25, -0.5]);
    expectTensor(eager.pow(x, 0), [3], [1, 1, 1]);
    expect(() => eager.pow(x, Number.NaN)).toThrow(OpError);
    // x^0 is constant: its gradient is 0, at x = 0 too (not 0 * 0^-1 = NaN).
    expectTensor(
      gradOf(t64([0, 2]), (b, p) => b.pow(p, 0)),
      [2],
      [0, 0],
    );
  });

  it('tanh and sigmoid follow their closed forms and saturate without overflow', () => {
    const x = t64([-1000, -745, -30, -1, 0, 2, 30, 1000]);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const s = eager.sigmoid(x);
    expect(values(s).every(Number.isFinite)).toBe(true);
    expect(s.data[0]).toBe(0);
    expect(s.data[1]).toBeGreaterThanOrEqual(0);
    expect(s.data[2]).toBeCloseTo(Math.exp(-30), 25);
    expectTensor(eager.slice(s, [3], [4]), [4], [sig(-1), 0.5, sig(2), sig(30)]);
    expect(s.data[7]).toBe(1);
    const f = eager.sigmoid(f32([-100, 100]));
    expect(values(f)).toEqual([Math.fround(Math.exp(-100)), 1]);
    const th = (v: number) => (Math.exp(2 * v) - 1) / (Math.exp(2 * v) + 1);
    expectTensor(eager.tanh(t64([-1, 0, 0.5, 1000, -1000])), [5], [th(-1), 0, th(0.5), 1, -1]);
  });

  it('relu and leakyRelu, with NaN propagated', () => {
    expectTensor(eager.relu(t64([-1, -0, 2, Number.NaN])), [4], [0, 0, 2, Number.NaN]);
    expectTensor(eager.leakyRelu(t64([-2, 3, Number.NaN]), 0.1), [3], [-0.2, 3, Number.NaN]);
    expectTensor(eager.leakyRelu(t64([-100])), [1], [-1]);
  });

  it('erf against known values, odd, and saturating', () => {
    const x = t64([0, 0.5, 1, 3.5, -2, -0.5, 6, Number.POSITIVE_INFINITY, Number.NaN]);
    const known = [0, 0.5204998778130465, 0.8427007929497149, 0.9999992569016276, -0.9953222650189527];
    const e = values(eager.erf(x));
    for (const [i, v] of known.entries()) expect(Math.abs(e[i]! - v)).toBeLessThanOrEqual(4 * Number.EPSILON);
    expect(e[5]).toBe(-e[1]!);
    expect(e[6]).toBeCloseTo(1, 15);
    expect(e[7]).toBe(1);
    expect(e[8]).toBeNaN();
  });

  it('gelu is x Phi(x), the exact form', () => {
    // Phi(1) = 0.8413447460685429, Phi(2) = 0.9772498680518208 (standard normal CDF tables).
    const g = eager.gelu(t64([-1, 0, 1, 2, -10]));
    expectTensor(g, [5], [-(1 - 0.8413447460685429), 0, 0.8413447460685429, 2 * 0.9772498680518208, -0], 15);
  });
});

describe('matmul and layout ops', () => {
  const a = t64([
    [1, 2],
    [3, 4],
  ]);
  const b = t64([
    [5, 6],
    [7, 8],
  ]);
  it('matmul with every transpose combination', () => {
    expectTensor(eager.matmul(a, b), [2, 2], [19, 22, 43, 50]);
    expectTensor(eager.matmul(a, b, { transA: true }), [2, 2], [26, 30, 38, 44]);
    expectTensor(eager.matmul(a, b, { transB: true }), [2, 2], [17, 23, 39, 53]);
    expectTensor(eager.matmul(a, b, { transA: true, transB: true }), [2, 2], [23, 31, 34, 46]);
  });

  it('batched matmul broadcasts the batch dimensions', () => {
    const x = arange(12, [2, 1, 2, 3]);
    const y = tensor([1, 0, 0, 1, 1, 1, 2, 0, 0, 2, 2, 2, 3, 0, 0, 3, 3, 3], {
      shape: [3, 3, 2],
      dtype: 'float64',
    });
    const out = eager.matmul(x, y);
    expect(out.shape).toEqual([2, 3, 2, 2]);
    // Batch (i, j) is x[i] @ y[j]; y[j] = (j+1) * [[1,0],[0,1],[1,1]], so each row is (r0 + r2, r1 + r2) * (j+1).
    const expected: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 1; j <= 3; j++)
        for (let r = 0; r < 2; r++) {
          const base = 6 * i + 3 * r;
          expected.push(j * (2 * base + 2), j * (2 * base + 3));
        }
    expect(values(out)).toEqual(expected);
  });

  it('transpose with a 3-D permutation, and by default reversing the axes', () => {
    const x = arange(24, [2, 3, 4]);
    const t = eager.transpose(x, [2, 0, 1]);
    expect(t.shape).toEqual([4, 2, 3]);
    for (let k = 0; k < 4; k++)
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < 3; j++) expect(t.data[k * 6 + i * 3 + j]).toBe(12 * i + 4 * j + k);
    expectTensor(eager.transpose(a), [2, 2], [1, 3, 2, 4]);
  });

  it('transpose matches the textbook one: contiguous runs, merged axes, size-1 axes, a strided inner axis', () => {
    const cases: [number[], number[]][] = [
      [
        [2, 3, 4, 5],
        [0, 2, 1, 3],
      ], // attention's split of heads: runs of 5
      [
        [2, 3, 4, 5],
        [2, 3, 0, 1],
      ], // two merged pairs
      [
        [2, 1, 3, 4],
        [1, 3, 2, 0],
      ], // a size-1 axis, then a strided inner axis
      [
        [3, 4],
        [0, 1],
      ], // the identity
      [
        [1, 5, 1],
        [2, 0, 1],
      ],
      [
        [2, 0, 3],
        [2, 1, 0],
      ], // empty
    ];
    for (const [shape, perm] of cases) {
      const size = shape.reduce((p, d) => p * d, 1);
      const x = arange(size, shape);
      const out = eager.transpose(x, perm);
      const outShape = perm.map((p) => shape[p]!);
      expect(out.shape).toEqual(outShape);
      const strides = shape.map((_, i) => shape.slice(i + 1).reduce((p, d) => p * d, 1));
      const expected = Array.from({ length: size }, (_, flat) => {
        let src = 0;
        for (let d = perm.length - 1, r = flat; d >= 0; r = Math.floor(r / outShape[d]!), d--)
          src += (r % outShape[d]!) * strides[perm[d]!]!;
        return src;
      });
      expect(values(out), `${shape} by ${perm}`).toEqual(expected);
    }
  });

  it('reshape infers -1 and broadcastTo repeats', () => {
    expectTensor(eager.reshape(arange(24, [2, 3, 4]), [4, -1]), [4, 6], [...Array(24).keys()]);
    expectTensor(
      eager.broadcastTo(t64([[1], [2]]), [2, 2, 3]),
      [2, 2, 3],
      [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2],
    );
    // A column, a tile, a scalar and a full copy (Note [row layouts]) against the textbook broadcast.
    for (const [from, to] of [
      [
        [2, 3, 1],
        [2, 3, 4],
      ],
      [
        [1, 3, 4],
        [2, 3, 4],
      ],
      [[1], [2, 3]],
      [
        [2, 3],
        [2, 3],
      ],
      [
        [2, 1, 4],
        [2, 3, 4],
      ],
    ] as [number[], number[]][]) {
      const x = arange(
        from.reduce((p, d) => p * d, 1),
        from,
      );
      const target = arange(
        to.reduce((p, d) => p * d, 1),
        to,
      );
      expect(values(eager.broadcastTo(x, [...to]))).toEqual(naiveBroadcast(x, target, (v) => v));
    }
  });

  it('concat, slice, pad', () => {
    expectTensor(eager.concat([a, t64([[9], [10]])], 1), [2, 3], [1, 2, 9, 3, 4, 10]);
    expectTensor(eager.concat([a, b], -2), [4, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    expectTensor(eager.slice(arange(12, [3, 4]), [1, 1], [2, -1]), [2, 3], [5, 6, 7, 9, 10, 11]);
    expectTensor(eager.pad(t64([[1, 2]]), [1, 0], [0, 2]), [2, 4], [0, 0, 0, 0, 1, 2, 0, 0]);
  });
});

describe('reductions', () => {
  // x[i][j][k] = 12i + 4j + k; over i and k: sum = 32j + 60 (8 elements), mean = 4j + 7.5.
  const x = arange(24, [2, 3, 4]);
  it('sum and mean over several axes, with and without keepdims', () => {
    expectTensor(eager.sum(x, [0, 2]), [3], [60, 92, 124]);
    expectTensor(eager.sum(x, [0, 2], true), [1, 3, 1], [60, 92, 124]);
    expectTensor(eager.mean(x, [0, -1]), [3], [7.5, 11.5, 15.5]);
    expectTensor(eager.mean(x, [2, 0], true), [1, 3, 1], [7.5, 11.5, 15.5]);
    expectTensor(eager.sum(x), [], [276]);
    expectTensor(eager.mean(x), [], [11.5]);
  });

  it('max over an axis and over all', () => {
    const y = t64([
      [1, 5, 2],
      [7, 3, 7],
    ]);
    expectTensor(eager.max(y, 1), [2], [5, 7]);
    expectTensor(eager.max(y, 0, true), [1, 3], [7, 5, 7]);
    expectTensor(eager.max(y), [], [7]);
    expectTensor(eager.max(t64([1, Number.NaN, 3])), [], [Number.NaN]);
  });

  it('sum and max over blocks of axes and scattered axes: the textbook float64 sums in input order', () => {
    const rng = new Rng(4);
    const shape = [3, 1, 4, 5];
    const z = tensor(
      Array.from({ length: 60 }, () => rng.uniform(-1, 1) * 10 ** rng.int(6)),
      { shape, dtype: 'float32' },
    );
    z.data[7] = Number.NaN;
    for (const axes of [[3], [2, 3], [0], [0, 1], [2], [1], [0, 1, 2, 3], [0, 3], [1, 3]]) {
      const keep = shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const sums = new Float64Array(keep.reduce((p, d) => p * d, 1));
      const maxes = new Array<number>(sums.length).fill(Number.NEGATIVE_INFINITY);
      for (let flat = 0; flat < 60; flat++) {
        let at = 0;
        for (let d = 0, r = flat, size = 60; d < 4; d++) {
          size /= shape[d]!;
          const idx = Math.floor(r / size);
          r %= size;
          at = at * keep[d]! + (axes.includes(d) ? 0 : idx);
        }
        sums[at] = sums[at]! + z.data[flat]!;
        const v = z.data[flat]!;
        if (v > maxes[at]! || Number.isNaN(v)) maxes[at] = v;
      }
      expect(values(eager.sum(z, axes, true)), `sum ${axes}`).toEqual(Array.from(sums, Math.fround));
      expect(values(eager.max(z, axes, true)), `max ${axes}`).toEqual(maxes);
    }
  });

  it('max splits the gradient evenly between ties', () => {
    const y = t64([
      [1, 3, 3],
      [2, 2, 2],
    ]);
    expectTensor(
      gradOf(y, (b, p) => b.max(p, 1)),
      [2, 3],
      [0, 0.5, 0.5, 1 / 3, 1 / 3, 1 / 3],
    );
    expectTensor(
      gradOf(y, (b, p) => b.max(p)),
      [2, 3],
      [0, 0.5, 0.5, 0, 0, 0],
    );
  });

  it('float32 sums accumulate in float64 and round once', () => {
    const s = eager.sum(f32([1e8, 1, -1e8]));
    expect(s.dtype).toBe('float32');
    expect(s.item()).toBe(1);
  });
});

describe('softmax and losses', () => {
  const row = [1, 2, 3];
  const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
  it('softmax follows exp(x)/sum exp(x), rows sum to 1, and is stable for large logits', () => {
    const p = row.map((v) => Math.exp(v - lse));
    expectTensor(eager.softmax(t64([row])), [1, 3], p);
    expectTensor(eager.softmax(t64([row.map((v) => v + 1000)])), [1, 3], p);
    expectTensor(eager.softmax(t64([[-1000, 0, 1000]])), [1, 3], [0, 0, 1]);
    const s = eager.softmax(
      t64([
        [0.3, -2, 5, 1],
        [800, 801, -800, 0],
      ]),
    );
    expectTensor(eager.sum(s, 1), [2], [1, 1]);
    expectTensor(eager.softmax(t64([[0, Number.NEGATIVE_INFINITY]])), [1, 2], [1, 0]);
  });

  it('softmax and logSoftmax along a non-last axis', () => {
    const x = t64([
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    const col = row.map((v) => Math.exp(v - lse));
    expectTensor(eager.softmax(x, 0), [3, 2], [col[0]!, 1 / 3, col[1]!, 1 / 3, col[2]!, 1 / 3]);
    expectTensor(
      eager.logSoftmax(x, 0),
      [3, 2],
      [1 - lse, -Math.log(3), 2 - lse, -Math.log(3), 3 - lse, -Math.log(3)],
    );
  });

  it('softmax and logSoftmax refuse an axis attribute that is not normalized (the facade normalizes -1)', () => {
    const x = t64([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(eager.softmax(x, -1).data).toEqual(eager.softmax(x, 1).data);
    for (const op of ['softmax', 'logSoftmax'])
      expect(() => eager.apply(op, [x], { axis: -1 })).toThrow(/axis -1 is out of range for rank 2/);
  });

  it('logSoftmax is x - logsumexp(x), finite for large logits', () => {
    expectTensor(
      eager.logSoftmax(t64([row])),
      [1, 3],
      row.map((v) => v - lse),
    );
    expectTensor(eager.logSoftmax(t64([[1000, 1000]])), [1, 2], [-Math.LN2, -Math.LN2]);
    expectTensor(eager.logSoftmax(f32([[-1e4, 1e4]])), [1, 2], [-2e4, 0]);
  });

  it('softmaxCrossEntropy is the mean over the batch, for indices, one-hot and probability rows', () => {
    const z = t64([row, [1, 1, 1]]);
    const expected = (lse - 3 + Math.log(3)) / 2;
    expectTensor(eager.softmaxCrossEntropy(z, t64([2, 0])), [], [expected]);
    expectTensor(
      eager.softmaxCrossEntropy(
        z,
        t64([
          [0, 0, 1],
          [1, 0, 0],
        ]),
      ),
      [],
      [expected],
    );
    const t = t64([
      [0.5, 0.5, 0],
      [0.2, 0.3, 0.5],
    ]);
    const soft = (0.5 * (lse - 1) + 0.5 * (lse - 2) + Math.log(3)) / 2;
    expectTensor(eager.softmaxCrossEntropy(z, t), [], [soft]);
    expect(() => eager.softmaxCrossEntropy(z, t64([3, 0]))).toThrow(ShapeError);
    expect(() => eager.softmaxCrossEntropy(z, t64([0.5, 0]))).toThrow(/not a class index/);
  });

  it('softmaxCrossEntropyGrad is (softmax(z) * sum(t) - t) * s in one op (Note [fused cross-entropy gradient])', () => {
    const z = t64([row, [1, 1, 1]]);
    const p = eager.softmax(z);
    const s = t64(0.5);
    // Class indices: the one-hot rows, sum 1.
    const byIndex = eager.softmaxCrossEntropyGrad(z, t64([2, 0]), s);
    const oneHot = [0, 0, 1, 1, 0, 0];
    expectTensor(
      byIndex,
      [2, 3],
      [...p.data].map((v, i) => (v - oneHot[i]!) * 0.5),
    );
    // Rows that do not sum to 1 scale the softmax by their sum.
    const t = t64([
      [0.5, 0.5, 0.5],
      [0.2, 0.3, 0.5],
    ]);
    const sums = [1.5, 1.5, 1.5, 1, 1, 1];
    expectTensor(
      eager.softmaxCrossEntropyGrad(z, t, s),
      [2, 3],
      [...p.data].map((v, i) => (v * sums[i]! - t.data[i]!) * 0.5),
    );
    expect(() => eager.softmaxCrossEntropyGrad(z, t64([3, 0]), s)).toThrow(
      /label 3 at row 0 is not a class index/,
    );
    expect(() => eager.softmaxCrossEntropyGrad(z, t64([2, 0]), t64([1, 2]))).toThrow(
      /the scale must be a scalar/,
    );
    expect(() => eager.softmaxCrossEntropyGrad(z, t64([2, 0, 1]), s)).toThrow(ShapeError);
  });

  it('softmaxCrossEntropy gives class-index labels a zero gradient when asked for one', () => {
    const b = new GraphBuilder();
    const z = b.param('z', [2, 3], { dtype: 'float64' });
    const y = b.param('y', [2], { dtype: 'float64' });
    b.output('loss', b.softmaxCrossEntropy(z, y));
    const { grads } = valueAndGrad(b.build(), { loss: 'loss' })(
      {},
      { z: t64([row, [1, 1, 1]]), y: t64([2, 0]) },
    );
    expectTensor(grads['y']!, [2], [0, 0]);
    const p = row.map((v) => Math.exp(v - lse));
    expectTensor(grads['z']!, [2, 3], [p[0]! / 2, p[1]! / 2, (p[2]! - 1) / 2, 1 / 6 - 0.5, 1 / 6, 1 / 6]);
  });

  it('mse is the mean of squared differences', () => {
    const target = tensor([1, 0, 0, 4], { shape: [2, 2], dtype: 'float64' });
    expectTensor(eager.mse(arange(4, [2, 2]), target), [], [(1 + 1 + 4 + 1) / 4]);
  });
});

describe('indexing ops', () => {
  const table = t64([
    [1, 2],
    [3, 4],
    [5, 6],
  ]);
  it('gather rows, repeated indices included, and along axis 1', () => {
    expectTensor(eager.gather(table, t64([2, 0, 2])), [3, 2], [5, 6, 1, 2, 5, 6]);
    expectTensor(eager.gather(table, t64([[1, 1]]), 1), [3, 1, 2], [2, 2, 4, 4, 6, 6]);
    expect(() => eager.gather(table, t64([3]))).toThrow(InputError);
  });

  it('the gradient of gather adds duplicate indices', () => {
    const i = t64([2, 0, 2, 2]);
    expectTensor(
      gradOf(table, (b, p) => b.gather(p, b.const(i))),
      [3, 2],
      [1, 1, 0, 0, 3, 3],
    );
  });

  it('scatterAdd adds duplicates', () => {
    const u = t64([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expectTensor(eager.scatterAdd(u, t64([1, 0, 1]), [3, 2]), [3, 2], [2, 2, 4, 4, 0, 0]);
    expectTensor(eager.scatterAdd(t64([[1, 2, 3]]), t64([0, 0, 1]), [1, 2], 1), [1, 2], [3, 3]);
  });

  it('oneHot in the indices dtype or the one asked for', () => {
    const h = eager.oneHot(t64([2, 0, 1]), 3);
    expect(h.dtype).toBe('float64');
    expectTensor(h, [3, 3], [0, 0, 1, 1, 0, 0, 0, 1, 0]);
    expect(eager.oneHot(t64([1]), 2, 'float32').dtype).toBe('float32');
    expect(() => eager.oneHot(t64([2]), 2)).toThrow(InputError);
  });

  it('stopGradient is the identity, dimSize the product of dimensions', () => {
    expectTensor(eager.stopGradient(table), [3, 2], [1, 2, 3, 4, 5, 6]);
    expectTensor(eager.apply('dimSize', [], { dims: [2, 3], dtype: 'float64' }), [], [6]);
  });
});

describe('dtypes', () => {
  it('every op keeps the dtype of its inputs', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const x = tensor([[0.1, -0.7, 1.3]], { dtype });
      const outs = [
        eager.exp(x),
        eager.add(x, x),
        eager.matmul(x, x, { transB: true }),
        eager.sum(x),
        eager.softmax(x),
        eager.gelu(x),
        eager.mse(x, x),
        eager.softmaxCrossEntropy(x, tensor([1], { dtype })),
        eager.concat([x, x]),
      ];
      for (const out of outs) expect(out.dtype).toBe(dtype);
    }
  });

  it('float32 rounds where float64 does not', () => {
    expect(eager.exp(f32([1])).item()).toBe(Math.fround(Math.E));
    expect(eager.exp(t64([1])).item()).toBe(Math.E);
    expect(eager.div(f32([1]), 3).item()).toBe(Math.fround(1 / 3));
  });
});

describe('errors from the eager ops name the op and the input', () => {
  const catchError = (f: () => unknown): Error & { context: Record<string, unknown> } => {
    try {
      f();
    } catch (err) {
      return err as Error & { context: Record<string, unknown> };
    }
    throw new Error('expected an error');
  };

  it('binary ops whose shapes do not broadcast', () => {
    const err = catchError(() => eager.add(arange(6, [2, 3]), arange(4, [4])));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/^add: input 1 has shape \[4\].*input 0 of shape \[2,3\]/);
    expect(err.context).toMatchObject({ op: 'add', input: 1, found: [4] });
  });

  it('matmul with differing inner dimensions or a vector', () => {
    const err = catchError(() => eager.matmul(t64([[1, 2, 3]]), t64([[1], [2]])));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/^matmul: inner dimensions differ.*3 in input 0 vs 2 in input 1/);
    expect(err.context).toMatchObject({ op: 'matmul', input: 1, expected: 3, found: 2 });
    expect(catchError(() => eager.matmul(t64([1, 2]), t64([[1], [2]]))).context).toMatchObject({
      op: 'matmul',
      input: 0,
    });
    expect(catchError(() => eager.matmul(arange(8, [2, 2, 2]), arange(12, [3, 2, 2]))).context).toMatchObject(
      {
        op: 'matmul',
        input: 1,
      },
    );
  });

  it('operands of different dtypes', () => {
    const err = catchError(() => eager.mul(t64([1, 2]), f32([1, 2])));
    expect(err).toBeInstanceOf(DTypeError);
    expect(err.message).toMatch(/^mul: input 1 has dtype float32, expected float64/);
    expect(err.context).toMatchObject({ op: 'mul', input: 1, expected: 'float64', found: 'float32' });
    expect(catchError(() => eager.concat([t64([1]), t64([2]), f32([3])])).context).toMatchObject({
      input: 2,
    });
  });

  it('shape rules of the other ops', () => {
    const x = arange(6, [2, 3]);
    expect(catchError(() => eager.concat([x, arange(4, [2, 2])], 0)).context).toMatchObject({
      op: 'concat',
      input: 1,
    });
    expect(catchError(() => eager.mse(x, arange(3, [3]))).context).toMatchObject({ op: 'mse', input: 1 });
    expect(catchError(() => eager.softmaxCrossEntropy(x, arange(3, [3]))).context).toMatchObject({
      op: 'softmaxCrossEntropy',
      input: 1,
    });
    expect(() => eager.reshape(x, [4, -1])).toThrow(ShapeError);
    expect(() => eager.slice(x, [1, 0], [2, 3])).toThrow(ShapeError);
    expect(() => eager.transpose(x, [0, 0])).toThrow(ShapeError);
    expect(() => eager.sum(x, 2)).toThrow(ShapeError);
    expect(() => eager.broadcastTo(x, [3, 3])).toThrow(ShapeError);
    expect(() => eager.apply('noSuchOp', [x])).toThrow(OpError);
    expect(() => eager.apply('add', [x])).toThrow(OpError);
  });
});
