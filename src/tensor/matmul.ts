import { fmtShape, ShapeError } from '../errors.ts';
import { tryBroadcastShapes } from './shape.ts';
import { allocate, Tensor } from './tensor.ts';

/**
 * Batched matmul: C[..., m, n] = op(A)[..., m, k] op(B)[..., k, n], op = transpose when asked. The
 * leading (batch) dimensions broadcast. Transposed operands are read through strides, never copied.
 */
export function matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  if (a.rank < 2 || b.rank < 2) {
    throw new ShapeError(`matmul: expected operands of rank >= 2, found ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
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
  if (batch === null) throw new ShapeError(`matmul: batch dimensions ${fmtShape(batchA)} and ${fmtShape(batchB)} do not broadcast`);
  const out = allocate(a.dtype, batch.reduce((p, d) => p * d, 1) * m * n);
  const offsetsA = batchOffsets(batch, batchA, m * k);
  const offsetsB = batchOffsets(batch, batchB, k * n);
  for (let i = 0; i < offsetsA.length; i++) {
    gemm(a.data, offsetsA[i]!, transA, b.data, offsetsB[i]!, transB, out, i * m * n, m, n, k);
  }
  return new Tensor(a.dtype, [...batch, m, n], out);
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

/**
 * One matrix product into c[co..]. Each output element is accumulated over k in increasing order,
 * in float64, and rounded once: the summation order is the same whatever the tiling.
 */
function gemm(a: Data, ao: number, transA: boolean, b: Data, bo: number, transB: boolean, c: Data, co: number, m: number, n: number, k: number): void {
  // Element strides of op(A) (rows i, inner p) and op(B) (inner p, columns j).
  const ai = transA ? 1 : k;
  const ap = transA ? m : 1;
  const bp = transB ? 1 : n;
  const bj = transB ? k : 1;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      let pa = ao + i * ai;
      let pb = bo + j * bj;
      for (let p = 0; p < k; p++) {
        acc += a[pa]! * b[pb]!;
        pa += ap;
        pb += bp;
      }
      c[co + i * n + j] = acc;
    }
  }
}
