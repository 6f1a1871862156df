import { type BinaryKind, fallbackKernels, type ReduceKind, type UnaryKind } from '../kernels.ts';
import { type RowOperand, rowLayout, sizeOf, tryBroadcastShapes } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import type { WasmArena, WasmExports } from './instance.ts';

// The wasm kernels below take float32 tensors in the layouts they know; everything else (float64,
// other kinds, other broadcasts or axes, empty tensors, memory that cannot grow) goes to the
// TypeScript kernels, which also raise the errors. Each copies its inputs into wasm memory and its
// output out into fresh owned storage.

type UnaryExport = 'neg' | 'abs' | 'square' | 'relu' | 'erf' | 'exp' | 'gelu' | 'geluGrad';
const UNARY: Partial<Record<UnaryKind, UnaryExport>> = {
  neg: 'neg',
  abs: 'abs',
  square: 'square',
  relu: 'relu',
  erf: 'erf',
  exp: 'exp',
  gelu: 'gelu',
  geluGrad: 'geluGrad',
};

export function wasmUnary(arena: WasmArena, kind: UnaryKind, x: Tensor, param = 0): Tensor {
  // pow(x, 2) is x * x in the TypeScript kernel too.
  const name = kind === 'pow' && param === 2 ? 'square' : UNARY[kind];
  if (x.dtype !== 'float32' || x.size === 0 || (name === undefined && kind !== 'leakyRelu')) {
    return fallbackKernels().unary(kind, x, param);
  }
  const n = x.size;
  const regions = arena.layout(n * 4, n * 4);
  if (regions === null) return fallbackKernels().unary(kind, x, param);
  const [px, po] = regions as [number, number];
  arena.f32(px, n).set(x.data);
  if (name === undefined) arena.exports.leakyRelu(px, po, n, param);
  else arena.exports[name](px, po, n);
  return new Tensor('float32', x.shape, arena.copyOut(po, n));
}

/** Indices into the module's table of binary row kernels. */
const BINARY: Record<BinaryKind, number> = {
  add: 0,
  sub: 1,
  mul: 2,
  div: 3,
  maximum: 4,
  minimum: 5,
  greater: 6,
  greaterEqual: 7,
  equal: 8,
};

/**
 * The broadcasts of Note [row layouts] (src/tensor/shape.ts): the output as rows x cols, row r of an
 * operand at a byte step per row, read a vector at a time (a full row or a tile) or one value
 * splatted into a 16-byte cell (a scalar, or a column's value for the row: one cell per row).
 */
export function wasmBinary(arena: WasmArena, kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
  const fallback = () => fallbackKernels().binary(kind, a, b);
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback();
  const shape = tryBroadcastShapes(a.shape, b.shape) as number[] | null;
  if (shape === null) return fallback();
  const n = sizeOf(shape);
  const layout = n === 0 ? null : rowLayout(a.shape, b.shape, shape);
  if (layout === null) return fallback();
  const { rows, cols } = layout;
  const bytes = (t: Tensor, how: RowOperand) => (how === 'column' ? rows * 16 : t.bytes);
  const regions = arena.layout(bytes(a, layout.a), bytes(b, layout.b), n * 4);
  if (regions === null) return fallback();
  const [pa, pb, po] = regions as [number, number, number];
  // Per operand: the byte step per vector and per row.
  const place = (t: Tensor, at: number, how: RowOperand): [number, number] => {
    if (how === 'scalar') {
      arena.f32(at, 4).fill(t.data[0]!);
      return [0, 0];
    }
    if (how === 'column') {
      const cells = arena.f32(at, rows * 4);
      const d = t.data;
      for (let r = 0; r < rows; r++) cells.fill(d[r]!, 4 * r, 4 * r + 4);
      return [0, 16];
    }
    arena.f32(at, t.size).set(t.data);
    return [16, how === 'full' ? cols * 4 : 0];
  };
  const [ia, sa] = place(a, pa, layout.a);
  const [ib, sb] = place(b, pb, layout.b);
  arena.exports.binary(BINARY[kind], pa, ia, sa, pb, ib, sb, po, rows, cols);
  return new Tensor('float32', shape, arena.copyOut(po, n));
}

/**
 * Reductions whose reduced axes are all trailing (per-row sums: losses, norms) or all leading (column
 * sums: bias gradients), ignoring size-1 axes. See Note [wasm reduction order] in kernels.wat.
 */
export function wasmReduce(arena: WasmArena, kind: ReduceKind, x: Tensor, axes: readonly number[]): Tensor {
  const fallback = () => fallbackKernels().reduce(kind, x, axes);
  if (x.dtype !== 'float32' || x.size === 0) return fallback();
  // The reduced flags of the axes that are not 1: kept then reduced (trailing), or reduced then kept.
  const flags = x.shape.flatMap((d, i) => (d === 1 ? [] : [axes.includes(i)]));
  const count = flags.filter((r) => r).length;
  const trailing = flags.every((r, i) => r === i >= flags.length - count);
  if (!trailing && !flags.every((r, i) => r === i < count)) return fallback();
  const reducedSize = x.shape.reduce((p, d, i) => (axes.includes(i) ? p * d : p), 1);
  const keptSize = x.size / reducedSize;
  // Per-row reductions of rows x len, or column reductions of rows x cols (rows reduced).
  const [rows, len] = trailing ? [keptSize, reducedSize] : [reducedSize, keptSize];
  const outSize = keptSize;
  const regions = arena.layout(x.bytes, outSize * 4, outSize * 8);
  if (regions === null) return fallback();
  const [px, po, acc] = regions as [number, number, number];
  arena.f32(px, x.size).set(x.data);
  const e: WasmExports = arena.exports;
  if (kind === 'sum') {
    if (trailing) e.sumRows(px, po, rows, len);
    else e.sumCols(px, po, rows, len, acc);
  } else if (trailing) e.maxRows(px, po, rows, len);
  else e.maxCols(px, po, rows, len);
  const shape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return new Tensor('float32', shape, arena.copyOut(po, outSize));
}

/** Softmax and logSoftmax over the last axis. See Note [wasm softmax] in kernels.wat. */
export function wasmSoftmax(arena: WasmArena, x: Tensor, axis: number, log: boolean): Tensor {
  const fallback = () => (log ? fallbackKernels().logSoftmax(x, axis) : fallbackKernels().softmax(x, axis));
  if (x.dtype !== 'float32' || x.rank === 0 || x.size === 0 || axis !== x.rank - 1) return fallback();
  const len = x.shape[axis]!;
  const rows = x.size / len;
  const regions = arena.layout(x.bytes, x.bytes, rows * 4, rows * 8);
  if (regions === null) return fallback();
  const [px, po, maxes, sums] = regions as [number, number, number, number];
  arena.f32(px, x.size).set(x.data);
  if (!log) {
    arena.exports.softmax(px, po, rows, len);
  } else {
    arena.exports.logSoftmaxSums(px, po, rows, len, maxes, sums);
    const logSums = arena.f64(sums, rows);
    for (let r = 0; r < rows; r++) logSums[r] = Math.log(logSums[r]!);
    arena.exports.logSoftmaxFinish(px, po, rows, len, maxes, sums);
  }
  return new Tensor('float32', x.shape, arena.copyOut(po, x.size));
}

/** The sum of squares in float64: four partial sums in wasm, the tail and the last adds here, in the order of the TypeScript kernel. */
export function wasmSumSquares(arena: WasmArena, x: Tensor): number {
  if (x.dtype !== 'float32' || x.size === 0) return fallbackKernels().sumSquares(x);
  const n = x.size;
  const regions = arena.layout(x.bytes, 32);
  if (regions === null) return fallbackKernels().sumSquares(x);
  const [px, po] = regions as [number, number];
  arena.f32(px, n).set(x.data);
  arena.exports.sumSquares(px, n, po);
  const [s0, s1, s2, s3] = arena.f64(po, 4) as unknown as [number, number, number, number];
  let first = s0;
  const d = x.data;
  for (let i = n - (n % 4); i < n; i++) first += d[i]! * d[i]!;
  return first + s1 + (s2 + s3);
}
