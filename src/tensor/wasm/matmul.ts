import { fallbackKernels } from '../kernels.ts';
import { matmulLayout } from '../matmul.ts';
import { Tensor } from '../tensor.ts';
import type { WasmArena } from './instance.ts';

// Cache blocks of the wasm gemm, in float32 elements. A packed B micro-panel (KC x 8, 8 KiB) stays in
// L1 while the packed A block (MC x KC, 120 KiB) streams from L2 past it. MC must be a multiple of the
// micro-kernel's rows (6 or 4) and NC of its 8 columns: a block's padded tiles must not reach into the next.
const MC = 120;
const KC = 256;
const NC = 1024;

/**
 * Batched float32 matmul with the wasm gemm: the whole operands are copied into wasm memory once,
 * each batch matrix is multiplied into a contiguous output there (operands read in place through
 * strides, transposed or not), and the output copied out. Anything else (float64, bad shapes, empty
 * outputs, memory that cannot grow) goes to the TypeScript kernel, which also raises the errors.
 * See Note [wasm matmul summation order] in kernels.wat.
 */
export function wasmMatmul(arena: WasmArena, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const fallback = () => fallbackKernels().matmul(a, b, transA, transB);
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback();
  // Throws the TypeScript kernel's errors for bad shapes.
  const { m, n, k, batch, offsetsA, offsetsB } = matmulLayout(a, b, transA, transB);
  const count = offsetsA.length;
  if (count * m * n === 0) return fallback();
  // One B for every batch matrix of a row-major A stored one after another (a dense layer over
  // [B, T, C]): the batch is one tall matrix, B packed once. Every output element still sums its
  // k products in order (Note [wasm matmul summation order]), so the bits are the same.
  const tall =
    !transA &&
    count > 1 &&
    offsetsB.every((o) => o === offsetsB[0]) &&
    offsetsA.every((o, t) => o === t * m * k);
  // The micro-kernel's rows: 6 with relaxed SIMD, 4 with simd128 (Note [6x8 micro-kernel]).
  const mr = arena.variant === 'relaxed-simd' ? 6 : 4;
  const rows = tall ? count * m : m;
  const [mPad, nPad] = [Math.ceil(rows / mr) * mr, Math.ceil(n / 8) * 8];
  // Where the padded C is C itself (n a multiple of 8), the gemm accumulates in place, no copy: the
  // tiles' rows past the last land in room left after C. Not for a loop over the batch, where they
  // would land in the next matrix.
  const direct = n % 8 === 0 && (tall || count === 1 || m % mr === 0);
  const regions = arena.layout(
    a.bytes,
    b.bytes,
    (count * m * n + (mPad - rows) * n) * 4,
    mPad * nPad * 4,
    MC * KC * 4,
    KC * Math.min(NC, nPad) * 4,
  );
  if (regions === null) return fallback();
  const [pa, pb, pc, cpad, packA, packB] = regions as [number, number, number, number, number, number];
  arena.f32(pa, a.size).set(a.data);
  arena.f32(pb, b.size).set(b.data);
  // Element strides of op(A) (rows i, inner p) and op(B) (inner p, columns j).
  const [ai, ap] = transA ? [1, m] : [k, 1];
  const [bp, bj] = transB ? [1, k] : [n, 1];
  const { gemm } = arena.exports;
  if (tall) {
    const ob = pb + 4 * offsetsB[0]!;
    gemm(pa, ai, ap, ob, bp, bj, pc, count * m, n, k, direct ? pc : cpad, packA, packB, MC, KC, NC, mr);
    return new Tensor('float32', [...batch, m, n], arena.copyOut(pc, count * m * n));
  }
  for (let t = 0; t < count; t++) {
    const [oa, ob, oc] = [pa + 4 * offsetsA[t]!, pb + 4 * offsetsB[t]!, pc + 4 * t * m * n];
    gemm(oa, ai, ap, ob, bp, bj, oc, m, n, k, direct ? oc : cpad, packA, packB, MC, KC, NC, mr);
  }
  return new Tensor('float32', [...batch, m, n], arena.copyOut(pc, count * m * n));
}
