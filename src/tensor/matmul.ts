import { fmtShape, ShapeError } from '../errors.ts';
import { tryBroadcastShapes } from './shape.ts';
import { allocateUninit, Tensor } from './tensor.ts';

/**
 * Batched matmul: C[..., m, n] = op(A)[..., m, k] op(B)[..., k, n], op = transpose when asked. The
 * leading (batch) dimensions broadcast. Transposed operands are never copied as a whole: packing
 * reads them through strides (see `gemm`).
 */
export function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const { m, n, k, batch, offsetsA, offsetsB } = matmulLayout(a, b, transA, transB);
  // Uninit: gemm copies every (i, j) of each batch matrix out of its float64 sums (zeros when k = 0).
  const out = allocateUninit(a.dtype, offsetsA.length * m * n);
  for (let i = 0; i < offsetsA.length; i++) {
    gemm(a.data, offsetsA[i]!, transA, b.data, offsetsB[i]!, transB, out, i * m * n, m, n, k);
  }
  return new Tensor(a.dtype, [...batch, m, n], out);
}

/** A batched matmul's sizes, broadcast batch shape and each batch matrix's element offset in A and B. */
export interface MatmulLayout {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly batch: readonly number[];
  readonly offsetsA: readonly number[];
  readonly offsetsB: readonly number[];
}

/** The layout of op(A) op(B), checked: ranks, inner dimensions, broadcasting batch dimensions. */
export function matmulLayout(a: Tensor, b: Tensor, transA: boolean, transB: boolean): MatmulLayout {
  if (a.rank < 2 || b.rank < 2) {
    throw new ShapeError(
      `matmul: expected operands of rank >= 2, found ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  }
  const ar = a.rank;
  const br = b.rank;
  const m = transA ? a.shape[ar - 1]! : a.shape[ar - 2]!;
  const k = transA ? a.shape[ar - 2]! : a.shape[ar - 1]!;
  const k2 = transB ? b.shape[br - 1]! : b.shape[br - 2]!;
  const n = transB ? b.shape[br - 2]! : b.shape[br - 1]!;
  if (k !== k2) {
    throw new ShapeError(`matmul: inner dimensions differ: ${k} and ${k2}`, { expected: k, found: k2 });
  }
  const batchA = a.shape.slice(0, ar - 2);
  const batchB = b.shape.slice(0, br - 2);
  const batch = tryBroadcastShapes(batchA, batchB) as number[] | null;
  if (batch === null) {
    throw new ShapeError(
      `matmul: batch dimensions ${fmtShape(batchA)} and ${fmtShape(batchB)} do not broadcast`,
    );
  }
  return {
    m,
    n,
    k,
    batch,
    offsetsA: batchOffsets(batch, batchA, m * k),
    offsetsB: batchOffsets(batch, batchB, k * n),
  };
}

/** Offsets of each batch matrix of an operand with batch shape `own` inside the broadcast batch `batch`. */
function batchOffsets(batch: readonly number[], own: readonly number[], matSize: number): number[] {
  const count = batch.reduce((p, d) => p * d, 1);
  const offsets = new Array<number>(count);
  const lead = batch.length - own.length;
  for (let i = 0; i < count; i++) {
    let rem = i;
    let off = 0;
    let stride = matSize;
    for (let d = batch.length - 1; d >= 0; d--) {
      const size = batch[d]!;
      const idx = rem % size;
      rem = (rem - idx) / size;
      if (d >= lead) {
        const ownSize = own[d - lead]!;
        if (ownSize !== 1) off += idx * stride;
        stride *= ownSize;
      }
    }
    offsets[i] = off;
  }
  return offsets;
}

type Data = Float32Array | Float64Array;

// Note [matmul summation order]
// Every output element is the float64 sum of its products a*b over p = 0..k-1 in increasing order,
// starting from +0, rounded once to the output dtype. That is what the naive triple loop computes,
// and it makes the result a function of the inputs alone, bitwise, whatever the blocking: the
// engines compare gradients bitwise (see Kernels). The tiled gemm keeps it by blocking k only in
// increasing order and carrying the partial sums between k-blocks in float64 (`acc`), never in the
// output dtype, and by never splitting one element's sum across accumulators.

// Register tile: an MR x NR block of C lives in 16 local variables inside `microKernel`; with the 8
// operands of one step that is about what V8 can keep in the 16 xmm registers it allocates from.
const MR = 4;
const NR = 4;
// Cache blocks, in elements of float64. A packed B micro-panel (KC x NR, 8 KiB) stays in L1 while
// MC / MR micro-panels of A (the packed MC x KC block, 128 KiB) stream from L2 past it; the packed
// B block (KC x NC, 512 KiB) stays in L2 too. Tuning KC and MC between 32 and 512 moved results by < 10%.
const KC = 256;
const MC = 64;
const NC = 256;

// Scratch reused across calls (grown, never shrunk): packed panels and the float64 partial sums.
const packedA = new Float64Array(MC * KC);
const packedB = new Float64Array(KC * NC);
let acc = new Float64Array(0);

/**
 * One matrix product into c[co..], C[m, n] = op(A)[m, k] op(B)[k, n]: the Goto/BLIS loop nest.
 * Panels of op(A) and op(B) are packed into contiguous float64 scratch in the order the micro-kernel
 * reads them; packing reads through strides, which is how transposed operands cost (almost) nothing
 * extra. Edge tiles are padded with zeros in the panels and `acc`, so the micro-kernel always
 * computes a whole MR x NR tile; the padding rows and columns are never copied out.
 * See Note [matmul summation order].
 */
function gemm(
  a: Data,
  ao: number,
  transA: boolean,
  b: Data,
  bo: number,
  transB: boolean,
  c: Data,
  co: number,
  m: number,
  n: number,
  k: number,
): void {
  // Element strides of op(A) (rows i, inner p) and op(B) (inner p, columns j).
  const ai = transA ? 1 : k;
  const ap = transA ? m : 1;
  const bp = transB ? 1 : n;
  const bj = transB ? k : 1;
  const mPad = roundUp(m, MR);
  if (acc.length < mPad * NC) acc = new Float64Array(mPad * NC);
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    const ncPad = roundUp(nc, NR);
    // Partial sums of C[:, jc..jc+nc], row stride ncPad; they start at +0 like the naive loop.
    acc.fill(0, 0, mPad * ncPad);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      packPanels(b, bo + pc * bp + jc * bj, bj, bp, nc, ncPad, kc, NR, packedB);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        const mcPad = roundUp(mc, MR);
        packPanels(a, ao + ic * ai + pc * ap, ai, ap, mc, mcPad, kc, MR, packedA);
        for (let jr = 0; jr < ncPad; jr += NR) {
          for (let ir = 0; ir < mcPad; ir += MR) {
            microKernel(kc, packedA, ir * kc, packedB, jr * kc, acc, (ic + ir) * ncPad + jr, ncPad);
          }
        }
      }
    }
    // Round once to the output dtype (a no-op for float64).
    for (let i = 0; i < m; i++) {
      const src = i * ncPad;
      const dst = co + i * n + jc;
      for (let j = 0; j < nc; j++) c[dst + j] = acc[src + j]!;
    }
  }
}

function roundUp(x: number, multiple: number): number {
  return Math.ceil(x / multiple) * multiple;
}

/**
 * Packs `count` rows (or columns) of an operand, `depth` deep along k, into panels of `width`:
 * panel q holds, for each p, the `width` values of rows q*width.. side by side, zeros past `count`.
 * `rowStride` steps between rows, `depthStride` along k, from element `base`.
 */
function packPanels(
  x: Data,
  base: number,
  rowStride: number,
  depthStride: number,
  count: number,
  countPad: number,
  depth: number,
  width: number,
  out: Float64Array,
): void {
  for (let r0 = 0; r0 < countPad; r0 += width) {
    let dst = r0 * depth;
    const rows = Math.min(width, count - r0);
    for (let p = 0; p < depth; p++) {
      const src = base + p * depthStride + r0 * rowStride;
      let r = 0;
      for (; r < rows; r++) out[dst + r] = x[src + r * rowStride]!;
      for (; r < width; r++) out[dst + r] = 0;
      dst += width;
    }
  }
}

/**
 * C[ci.., MR x NR, row stride ldc] += A panel (kc x MR) times B panel (kc x NR), the sums held in
 * locals over the whole k-block, one product added per step in increasing p.
 * Each `c += a * b` is a product rounded to float64 and then a sum: JavaScript never fuses them.
 */
// biome-ignore format: the 4x4 tile reads best as a grid
function microKernel(kc: number, A: Float64Array, ai: number, B: Float64Array, bi: number, C: Float64Array, ci: number, ldc: number): void {
  const c1 = ci + ldc;
  const c2 = c1 + ldc;
  const c3 = c2 + ldc;
  let c00 = C[ci]!, c01 = C[ci + 1]!, c02 = C[ci + 2]!, c03 = C[ci + 3]!;
  let c10 = C[c1]!, c11 = C[c1 + 1]!, c12 = C[c1 + 2]!, c13 = C[c1 + 3]!;
  let c20 = C[c2]!, c21 = C[c2 + 1]!, c22 = C[c2 + 2]!, c23 = C[c2 + 3]!;
  let c30 = C[c3]!, c31 = C[c3 + 1]!, c32 = C[c3 + 2]!, c33 = C[c3 + 3]!;
  for (let p = 0; p < kc; p++) {
    const a0 = A[ai]!, a1 = A[ai + 1]!, a2 = A[ai + 2]!, a3 = A[ai + 3]!;
    const b0 = B[bi]!, b1 = B[bi + 1]!, b2 = B[bi + 2]!, b3 = B[bi + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    ai += MR;
    bi += NR;
  }
  C[ci] = c00; C[ci + 1] = c01; C[ci + 2] = c02; C[ci + 3] = c03;
  C[c1] = c10; C[c1 + 1] = c11; C[c1 + 2] = c12; C[c1 + 3] = c13;
  C[c2] = c20; C[c2 + 1] = c21; C[c2 + 2] = c22; C[c2 + 3] = c23;
  C[c3] = c30; C[c3 + 1] = c31; C[c3 + 2] = c32; C[c3 + 3] = c33;
}
