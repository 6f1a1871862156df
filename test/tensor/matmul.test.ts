import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/errors.ts';
import { matmul } from '../../src/tensor/matmul.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { allocate, cast, type DType, Tensor, tensor, zeros } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

/**
 * The oracle: the textbook definition, written independently of src/tensor/matmul.ts. Each output
 * element is the float64 sum over p = 0..k-1, in increasing order from 0, rounded once to the output
 * dtype (Note [matmul summation order]). Batch dimensions broadcast NumPy-style.
 */
function referenceMatmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const [ar, br] = [a.rank, b.rank];
  const m = a.shape[transA ? ar - 1 : ar - 2]!;
  const k = a.shape[transA ? ar - 2 : ar - 1]!;
  const n = b.shape[transB ? br - 2 : br - 1]!;
  const rank = Math.max(ar, br) - 2;
  const batchA = [...Array(rank - (ar - 2)).fill(1), ...a.shape.slice(0, ar - 2)] as number[];
  const batchB = [...Array(rank - (br - 2)).fill(1), ...b.shape.slice(0, br - 2)] as number[];
  const batch = batchA.map((d, i) => Math.max(d, batchB[i]!));
  const count = batch.reduce((x, y) => x * y, 1);
  const out = allocate(a.dtype, count * m * n);
  // Element (i, p) of op(A) in batch matrix `am`, and (p, j) of op(B) in `bm`.
  const elemA = (am: number, i: number, p: number) => a.data[am * m * k + (transA ? p * m + i : i * k + p)]!;
  const elemB = (bm: number, p: number, j: number) => b.data[bm * k * n + (transB ? j * k + p : p * n + j)]!;
  for (let t = 0; t < count; t++) {
    // Unravel t into a batch index, then ravel it into each operand (size-1 dimensions stay at 0).
    let [rem, am, bm] = [t, 0, 0];
    const index = batch.map(() => 0);
    for (let d = rank - 1; d >= 0; d--) {
      index[d] = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
    }
    for (let d = 0; d < rank; d++) {
      am = am * batchA[d]! + (batchA[d] === 1 ? 0 : index[d]!);
      bm = bm * batchB[d]! + (batchB[d] === 1 ? 0 : index[d]!);
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) sum += elemA(am, i, p) * elemB(bm, p, j);
        out[(t * m + i) * n + j] = sum;
      }
    }
  }
  return new Tensor(a.dtype, [...batch, m, n], out);
}

/** Operand shape for op(X) of shape [rows, cols] with the given batch dims. */
const operand = (batch: number[], rows: number, cols: number, trans: boolean) =>
  trans ? [...batch, cols, rows] : [...batch, rows, cols];

const TRANSPOSES = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;
const DTYPES: DType[] = ['float32', 'float64'];
const CASES = DTYPES.flatMap((dtype) => TRANSPOSES.map(([transA, transB]) => ({ dtype, transA, transB })));
const ODD_SIZES = [1, 2, 3, 4, 5, 7, 17, 33, 65];

describe.each(CASES)('matmul $dtype transA=$transA transB=$transB', ({ dtype, transA, transB }) => {
  it('is bitwise equal to the reference on random odd shapes', () => {
    const rng = new Rng(1234);
    for (let trial = 0; trial < 40; trial++) {
      const [m, k, n] = [0, 0, 0].map(() => ODD_SIZES[rng.int(ODD_SIZES.length)]!) as [
        number,
        number,
        number,
      ];
      const a = rng.uniformTensor(operand([], m, k, transA), -1, 1, dtype);
      const b = rng.uniformTensor(operand([], k, n, transB), -1, 1, dtype);
      expectBitwise(matmul(a, b, transA, transB), referenceMatmul(a, b, transA, transB));
    }
  });

  it('is bitwise equal across cache-block boundaries (m > 64, k > 256, n > 256)', () => {
    const rng = new Rng(99);
    const [m, k, n] = [67, 515, 261];
    const a = rng.normalTensor(operand([], m, k, transA), 0, 1, dtype);
    const b = rng.normalTensor(operand([], k, n, transB), 0, 1, dtype);
    expectBitwise(matmul(a, b, transA, transB), referenceMatmul(a, b, transA, transB));
  });

  it('broadcasts batch dimensions: [2,1] x [3] and [] x [4]', () => {
    const rng = new Rng(7);
    const [m, k, n] = [5, 17, 3];
    const a = rng.uniformTensor(operand([2, 1], m, k, transA), -1, 1, dtype);
    const b = rng.uniformTensor(operand([3], k, n, transB), -1, 1, dtype);
    const c = matmul(a, b, transA, transB);
    expect(c.shape).toEqual([2, 3, m, n]);
    expectBitwise(c, referenceMatmul(a, b, transA, transB));
    const a2 = rng.uniformTensor(operand([], m, k, transA), -1, 1, dtype);
    const b2 = rng.uniformTensor(operand([4], k, n, transB), -1, 1, dtype);
    expectBitwise(matmul(a2, b2, transA, transB), referenceMatmul(a2, b2, transA, transB));
  });
});

describe('matmul values', () => {
  it('is exact on small integers, whatever the order', () => {
    // Products and partial sums of small integers are exact in float64 and in float32 output.
    const rng = new Rng(3);
    for (const dtype of DTYPES) {
      const [m, k, n] = [9, 300, 6];
      const ints = (rows: number, cols: number) =>
        tensor(
          Array.from({ length: rows * cols }, () => rng.int(21) - 10),
          { shape: [rows, cols], dtype },
        );
      const a = ints(m, k);
      const b = ints(k, n);
      const c = matmul(a, b, false, false);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let exact = 0;
          for (let p = 0; p < k; p++) exact += a.data[i * k + p]! * b.data[p * n + j]!;
          expect(c.data[i * n + j]).toBe(exact);
        }
      }
    }
  });

  it('float32 is within rounding of an exact float64 result', () => {
    const rng = new Rng(11);
    const [m, k, n] = [13, 200, 11];
    const a = rng.normalTensor([m, k], 0, 1, 'float32');
    const b = rng.normalTensor([k, n], 0, 1, 'float32');
    const c = matmul(a, b, false, false);
    // Float32 products are exact in float64; Neumaier summation makes the reference exact to ~1 ulp.
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let [sum, comp, abs] = [0, 0, 0];
        for (let p = 0; p < k; p++) {
          const x = a.data[i * k + p]! * b.data[p * n + j]!;
          const t = sum + x;
          comp += Math.abs(sum) >= Math.abs(x) ? sum - t + x : x - t + sum;
          sum = t;
          abs += Math.abs(x);
        }
        const exact = sum + comp;
        // One float32 rounding (half an ulp, 2^-24 relative) of a float64 sum whose own error is at most
        // about k * 2^-53 * sum|a*b|; both bounds doubled for slack.
        const bound = Math.abs(exact) * 2 ** -23 + k * 2 ** -52 * abs;
        expect(Math.abs(c.data[i * n + j]! - exact)).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('float32 output is float64 matmul of the same values, rounded once', () => {
    const rng = new Rng(5);
    const a = rng.uniformTensor([33, 65], -1, 1, 'float32');
    const b = rng.uniformTensor([65, 17], -1, 1, 'float32');
    const wide = matmul(cast(a, 'float64'), cast(b, 'float64'), false, false);
    expectBitwise(matmul(a, b, false, false), cast(wide, 'float32'));
  });

  it('keeps padded tile rows and columns out of the result (infinities, NaN, -0)', () => {
    // m = 3 and n = 5 are not multiples of the 4x4 tile: padding multiplies zeros with the inf below.
    const a = tensor([1, -0, Number.POSITIVE_INFINITY, 2, -0, 0, 3, 1, Number.NaN], { shape: [3, 3] });
    const b = tensor([Number.POSITIVE_INFINITY, 1, -0, 2, 0, -1, 1, -0, 4, 1, 0, 2, -0, 8, -0], {
      shape: [3, 5],
    });
    const c = matmul(a, b, false, false);
    const ref = referenceMatmul(a, b, false, false);
    for (let i = 0; i < c.size; i++) expect(Object.is(c.data[i], ref.data[i])).toBe(true);
    // An all -0 product row sums to +0, as a sum started from 0 does.
    const negZero = matmul(tensor([[-0, -0]]), tensor([[1], [1]]), false, false);
    expect(Object.is(negZero.data[0], 0)).toBe(true);
  });

  it('handles empty dimensions: k = 0 gives zeros, m = 0 gives an empty result', () => {
    expect(
      Array.from(matmul(tensor([], { shape: [2, 0] }), tensor([], { shape: [0, 3] }), false, false).data),
    ).toEqual([0, 0, 0, 0, 0, 0]);
    expect(matmul(tensor([], { shape: [0, 4] }), zeros([4, 3]), false, false).shape).toEqual([0, 3]);
  });

  it('does not depend on earlier calls (scratch reuse)', () => {
    const rng = new Rng(21);
    const small = [rng.uniformTensor([3, 5]), rng.uniformTensor([5, 2])] as const;
    const before = matmul(small[0], small[1], false, false);
    matmul(rng.uniformTensor([130, 300]), rng.uniformTensor([300, 270]), false, false);
    expectBitwise(matmul(small[0], small[1], false, false), before);
  });
});

describe('matmul shape errors', () => {
  it('throws ShapeError when inner dimensions differ', () => {
    const a = tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] });
    expect(() => matmul(a, a, false, false)).toThrow(ShapeError);
    expect(() => matmul(a, a, false, false)).toThrow(/inner dimensions differ: 3 and 2/);
    expect(() => matmul(a, a, true, true)).toThrow(ShapeError);
    expect(matmul(a, a, false, true).shape).toEqual([2, 2]);
  });

  it('throws ShapeError for operands of rank < 2', () => {
    const v = tensor([1, 2, 3]);
    const m = tensor([1, 2, 3, 4, 5, 6], { shape: [3, 2] });
    expect(() => matmul(v, m, false, false)).toThrow(ShapeError);
    expect(() => matmul(m, v, false, false)).toThrow(/rank >= 2/);
  });

  it('throws ShapeError when batch dimensions do not broadcast', () => {
    const rng = new Rng(0);
    expect(() => matmul(rng.uniformTensor([2, 3, 4]), rng.uniformTensor([3, 4, 5]), false, false)).toThrow(
      /batch dimensions \[2\] and \[3\] do not broadcast/,
    );
  });
});
