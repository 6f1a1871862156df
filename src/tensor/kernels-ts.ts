import { fmtShape, InputError, ShapeError } from '../errors.ts';
import { conv2dByPatches, conv2dInputGradByPatches, conv2dWeightGradByPatches } from './conv.ts';
import {
  type BinaryKind,
  type Kernels,
  type ReduceKind,
  setFallbackKernels,
  type UnaryKind,
} from './kernels.ts';
import { matmul } from './matmul.ts';
import {
  broadcastShapeOf,
  type RowLayout,
  type RowOperand,
  rowLayout,
  sizeOf,
  stridesOf,
  tryBroadcastShapes,
} from './shape.ts';
import { erf, erf32, exp32, INV_SQRT_2PI } from './special.ts';
import { allocate, allocateUninit, type Storage, Tensor } from './tensor.ts';
import {
  avgPool2d,
  avgPool2dGrad,
  col2im,
  im2col,
  maxPool2d,
  maxPool2dGrad,
  maxPool2dSelect,
} from './window.ts';

function unary(kind: UnaryKind, x: Tensor, param = 0): Tensor {
  const a = x.data;
  const n = a.length;
  // Uninit: every case writes o[0..n) (an unknown kind throws).
  const o = allocateUninit(x.dtype, n);
  switch (kind) {
    case 'neg':
      for (let i = 0; i < n; i++) o[i] = -a[i]!;
      break;
    case 'exp':
      // Note [float32 exp]: the steps the wasm kernel takes too.
      if (x.dtype === 'float32') for (let i = 0; i < n; i++) o[i] = exp32(a[i]!);
      else for (let i = 0; i < n; i++) o[i] = Math.exp(a[i]!);
      break;
    case 'log':
      for (let i = 0; i < n; i++) o[i] = Math.log(a[i]!);
      break;
    case 'sqrt':
      for (let i = 0; i < n; i++) o[i] = Math.sqrt(a[i]!);
      break;
    case 'square':
      for (let i = 0; i < n; i++) o[i] = a[i]! * a[i]!;
      break;
    case 'abs':
      for (let i = 0; i < n; i++) o[i] = Math.abs(a[i]!);
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) o[i] = Math.tanh(a[i]!);
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) {
        const v = a[i]!;
        // Two branches keep exp from overflowing for large |v|.
        if (v >= 0) o[i] = 1 / (1 + Math.exp(-v));
        else {
          const e = Math.exp(v);
          o[i] = e / (1 + e);
        }
      }
      break;
    case 'relu':
      for (let i = 0; i < n; i++) o[i] = a[i]! > 0 || Number.isNaN(a[i]!) ? a[i]! : 0;
      break;
    case 'erf':
      // Note [float32 erf]: a rational function where the result is float32 anyway.
      if (x.dtype === 'float32') for (let i = 0; i < n; i++) o[i] = erf32(a[i]!);
      else for (let i = 0; i < n; i++) o[i] = erf(a[i]!);
      break;
    // Note [fused GELU]: the composite's float64 steps in one pass, float32 rounded once.
    case 'gelu':
      if (x.dtype === 'float32') {
        for (let i = 0; i < n; i++) {
          const v = a[i]!;
          o[i] = v * ((erf32(v * Math.SQRT1_2) + 1) * 0.5);
        }
      } else {
        for (let i = 0; i < n; i++) {
          const v = a[i]!;
          o[i] = v * ((erf(v * Math.SQRT1_2) + 1) * 0.5);
        }
      }
      break;
    case 'geluGrad':
      if (x.dtype === 'float32') {
        for (let i = 0; i < n; i++) {
          const v = a[i]!;
          o[i] = (erf32(v * Math.SQRT1_2) + 1) * 0.5 + v * (exp32(v * v * -0.5) * INV_SQRT_2PI);
        }
      } else {
        for (let i = 0; i < n; i++) {
          const v = a[i]!;
          o[i] = (erf(v * Math.SQRT1_2) + 1) * 0.5 + v * (Math.exp(v * v * -0.5) * INV_SQRT_2PI);
        }
      }
      break;
    case 'sign':
      for (let i = 0; i < n; i++) o[i] = Math.sign(a[i]!);
      break;
    case 'leakyRelu':
      for (let i = 0; i < n; i++) o[i] = a[i]! > 0 ? a[i]! : param * a[i]!;
      break;
    case 'pow':
      if (param === 2) for (let i = 0; i < n; i++) o[i] = a[i]! * a[i]!;
      else for (let i = 0; i < n; i++) o[i] = a[i]! ** param;
      break;
    default:
      throw new InputError(`kernels.unary: unknown kind ${String(kind)}`);
  }
  return new Tensor(x.dtype, x.shape, o);
}

type BinFn = (x: number, y: number) => number;
const binFns: Record<BinaryKind, BinFn> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  maximum: (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? Number.NaN : x >= y ? x : y),
  minimum: (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? Number.NaN : x <= y ? x : y),
  greater: (x, y) => (x > y ? 1 : 0),
  greaterEqual: (x, y) => (x >= y ? 1 : 0),
  equal: (x, y) => (x === y ? 1 : 0),
};

function binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) {
    throw new ShapeError(`kernels.binary(${kind}): dtypes differ: ${a.dtype} and ${b.dtype}`);
  }
  const shape = broadcastShapeOf(a.shape, b.shape);
  if (shape === null) {
    throw new ShapeError(`${kind}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} do not broadcast`, {
      op: kind,
    });
  }
  const x = a.data;
  const y = b.data;
  const n = sizeOf(shape);
  // Uninit: the row loops write every row's cols outputs, rows * cols = n; stridedWalk every i < n.
  const o = allocateUninit(a.dtype, n);
  // The layouts rowLayout finds for operands of n elements or one, as one row of n (Note [row
  // layouts]): the same loop, without a layout object per call (a graph of small tensors is mostly
  // these calls).
  const na = x.length;
  const nb = y.length;
  if (na === n && nb === n) runRun(kind, x, 0, y, 0, o, 0, n);
  else if (na === n && nb === 1) runValue(kind, x, 0, y[0]!, o, 0, n);
  else if (na === 1 && nb === n) valueRun(kind, x[0]!, y, 0, o, 0, n);
  else {
    const layout = rowLayout(a.shape, b.shape, shape);
    if (layout === null) return binaryStrided(kind, a, b, shape, o);
    binaryRows(kind, layout, x, y, o);
  }
  return new Tensor(a.dtype, shape, o);
}

/** `binary` for a broadcast the row layouts do not cover: the strides walked per element. */
function binaryStrided(kind: BinaryKind, a: Tensor, b: Tensor, shape: readonly number[], o: Storage): Tensor {
  const x = a.data;
  const y = b.data;
  const f = binFns[kind];
  const sa = broadcastStrides(a.shape, shape);
  const sb = broadcastStrides(b.shape, shape);
  stridedWalk(shape, sa, sb, (i, ia, ib) => {
    o[i] = f(x[ia]!, y[ib]!);
  });
  return new Tensor(a.dtype, shape, o);
}

/** Where row r of an operand read as `how` starts (Note [row layouts]). */
function rowStart(how: RowOperand, r: number, cols: number): number {
  return how === 'full' ? r * cols : how === 'column' ? r : 0;
}

/**
 * An elementwise binary op over the output as rows x cols (Note [row layouts]): one loop per row
 * with a value or a run from each side, so the inner loops carry no index arithmetic and, for the
 * four arithmetic ops, no call.
 */
function binaryRows(kind: BinaryKind, layout: RowLayout, x: Storage, y: Storage, o: Storage): void {
  const { rows, cols } = layout;
  const xOne = layout.a === 'scalar' || layout.a === 'column';
  const yOne = layout.b === 'scalar' || layout.b === 'column';
  for (let r = 0; r < rows; r++) {
    const at = r * cols;
    const xs = rowStart(layout.a, r, cols);
    const ys = rowStart(layout.b, r, cols);
    if (yOne) {
      if (xOne) {
        const v = binFns[kind](x[xs]!, y[ys]!);
        for (let j = 0; j < cols; j++) o[at + j] = v;
      } else runValue(kind, x, xs, y[ys]!, o, at, cols);
    } else if (xOne) valueRun(kind, x[xs]!, y, ys, o, at, cols);
    else runRun(kind, x, xs, y, ys, o, at, cols);
  }
}

// One loop per arithmetic kind (the hot ones), the rest through binFns.
function runRun(
  kind: BinaryKind,
  x: Storage,
  xs: number,
  y: Storage,
  ys: number,
  o: Storage,
  at: number,
  n: number,
) {
  if (kind === 'add') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! + y[ys + j]!;
  else if (kind === 'sub') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! - y[ys + j]!;
  else if (kind === 'mul') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! * y[ys + j]!;
  else if (kind === 'div') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! / y[ys + j]!;
  else {
    const f = binFns[kind];
    for (let j = 0; j < n; j++) o[at + j] = f(x[xs + j]!, y[ys + j]!);
  }
}

function runValue(kind: BinaryKind, x: Storage, xs: number, v: number, o: Storage, at: number, n: number) {
  if (kind === 'add') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! + v;
  else if (kind === 'sub') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! - v;
  else if (kind === 'mul') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! * v;
  else if (kind === 'div') for (let j = 0; j < n; j++) o[at + j] = x[xs + j]! / v;
  else {
    const f = binFns[kind];
    for (let j = 0; j < n; j++) o[at + j] = f(x[xs + j]!, v);
  }
}

function valueRun(kind: BinaryKind, v: number, y: Storage, ys: number, o: Storage, at: number, n: number) {
  if (kind === 'add') for (let j = 0; j < n; j++) o[at + j] = v + y[ys + j]!;
  else if (kind === 'sub') for (let j = 0; j < n; j++) o[at + j] = v - y[ys + j]!;
  else if (kind === 'mul') for (let j = 0; j < n; j++) o[at + j] = v * y[ys + j]!;
  else if (kind === 'div') for (let j = 0; j < n; j++) o[at + j] = v / y[ys + j]!;
  else {
    const f = binFns[kind];
    for (let j = 0; j < n; j++) o[at + j] = f(v, y[ys + j]!);
  }
}

/** Strides of `own` seen from the broadcast shape `shape`: 0 on broadcast (size-1 or missing) axes. */
function broadcastStrides(own: readonly number[], shape: readonly number[]): number[] {
  const st = stridesOf(own);
  const lead = shape.length - own.length;
  return shape.map((_, d) => (d < lead || own[d - lead] === 1 ? 0 : st[d - lead]!));
}

/** Walks every index of `shape` in row-major order with two strided offsets. */
function stridedWalk(
  shape: readonly number[],
  sa: readonly number[],
  sb: readonly number[],
  f: (i: number, ia: number, ib: number) => void,
): void {
  const rank = shape.length;
  const n = sizeOf(shape);
  if (n === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < n; i++) {
    f(i, ia, ib);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      ia += sa[d]!;
      ib += sb[d]!;
      if (idx[d]! < shape[d]!) break;
      ia -= sa[d]! * shape[d]!;
      ib -= sb[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const ab = tryBroadcastShapes(a.shape, b.shape);
  const shape = ab === null ? null : (tryBroadcastShapes(cond.shape, ab) as number[] | null);
  if (shape === null || a.dtype !== b.dtype) {
    throw new ShapeError(
      `where: ${fmtShape(cond.shape)}, ${a.dtype}${fmtShape(a.shape)} and ${b.dtype}${fmtShape(b.shape)} do not broadcast to one dtype`,
      { op: 'where' },
    );
  }
  const n = sizeOf(shape);
  // The condition broadcast to the output, so the walk below needs only the two value strides.
  const c = cond.size === n ? cond.data : broadcastTo(cond, shape).data;
  const x = a.data;
  const y = b.data;
  // Uninit: the fast path and the walk each write o[0..n).
  const o = allocateUninit(a.dtype, n);
  if (x.length === n && y.length === n) {
    for (let i = 0; i < n; i++) o[i] = c[i] !== 0 ? x[i]! : y[i]!;
  } else {
    stridedWalk(shape, broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape), (i, ia, ib) => {
      o[i] = c[i] !== 0 ? x[ia]! : y[ib]!;
    });
  }
  return new Tensor(a.dtype, shape, o);
}

function argmax(x: Tensor, axis: number): Tensor {
  const shape = x.shape.filter((_, i) => i !== axis);
  // Uninit: alongAxis visits each output position once, in order.
  const o = allocateUninit(x.dtype, sizeOf(shape));
  const a = x.data;
  let k = 0;
  alongAxis(x.shape, axis, (base, len, step) => {
    let at = 0;
    for (let i = 1, p = base + step; i < len; i++, p += step) {
      const v = a[p]!;
      const best = a[base + at * step]!;
      if (v > best || (Number.isNaN(v) && !Number.isNaN(best))) at = i;
    }
    o[k++] = at;
  });
  return new Tensor(x.dtype, shape, o);
}

function reduce(kind: ReduceKind, x: Tensor, axes: readonly number[]): Tensor {
  const shape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = sizeOf(shape);
  const a = x.data;
  // Uninit: the block loops and the walk write all n (set, or fill then max).
  const o = allocateUninit(x.dtype, n);
  const block = reducedBlock(x.shape, axes);
  if (kind === 'sum') {
    // Accumulate in float64 in increasing input index order, round once.
    const acc = new Float64Array(n);
    if (block !== null) sumBlock(a, acc, block);
    else {
      const outStrides = broadcastStrides(shape, x.shape as number[]);
      stridedWalk(x.shape, outStrides, outStrides, (i, io) => {
        acc[io] = acc[io]! + a[i]!;
      });
    }
    o.set(acc);
    return new Tensor(x.dtype, shape, o);
  }
  o.fill(Number.NEGATIVE_INFINITY);
  if (block !== null) maxBlock(a, o, block);
  else {
    const outStrides = broadcastStrides(shape, x.shape as number[]);
    stridedWalk(x.shape, outStrides, outStrides, (i, io) => {
      const v = a[i]!;
      if (v > o[io]! || Number.isNaN(v)) o[io] = v;
    });
  }
  return new Tensor(x.dtype, shape, o);
}

/**
 * A reduction as [outer, len, inner], len reduced, when the reduced axes (size-1 axes aside) are
 * one block of consecutive axes: per-row statistics, column sums, a middle axis. Else null.
 */
function reducedBlock(shape: readonly number[], axes: readonly number[]): [number, number, number] | null {
  let first = shape.length;
  let last = -1;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1 || !axes.includes(i)) continue;
    first = Math.min(first, i);
    last = i;
  }
  for (let i = first; i <= last; i++) if (shape[i] !== 1 && !axes.includes(i)) return null;
  const span = (from: number, to: number) => sizeOf(shape.slice(from, to));
  return last < 0
    ? [sizeOf(shape), 1, 1]
    : [span(0, first), span(first, last + 1), span(last + 1, shape.length)];
}

// Both loops visit the input in increasing index order, as the strided walk does: the same sums.
function sumBlock(a: Storage, acc: Float64Array, [outer, len, inner]: [number, number, number]): void {
  for (let r = 0, i = 0; r < outer; r++) {
    const at = r * inner;
    for (let p = 0; p < len; p++) for (let j = 0; j < inner; j++, i++) acc[at + j] = acc[at + j]! + a[i]!;
  }
}

function maxBlock(a: Storage, o: Storage, [outer, len, inner]: [number, number, number]): void {
  for (let r = 0, i = 0; r < outer; r++) {
    const at = r * inner;
    for (let p = 0; p < len; p++) {
      for (let j = 0; j < inner; j++, i++) {
        const v = a[i]!;
        if (v > o[at + j]! || Number.isNaN(v)) o[at + j] = v;
      }
    }
  }
}

function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((p) => x.shape[p]!);
  const st = stridesOf(x.shape);
  // Output axes that are consecutive input axes move together: merged, they are one axis of their
  // product and the innermost one's stride. Size-1 axes are dropped (they move nothing).
  const dims: number[] = [];
  const strides: number[] = [];
  for (let i = 0; i < perm.length; i++) {
    const p = perm[i]!;
    if (x.shape[p] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides[last] === st[p]! * x.shape[p]!) {
      dims[last]! *= x.shape[p]!;
      strides[last] = st[p]!;
    } else {
      dims.push(x.shape[p]!);
      strides.push(st[p]!);
    }
  }
  // Uninit: the runs below, or the walk, visit every index of the output.
  const o = allocateUninit(x.dtype, x.size);
  const a = x.data;
  const rank = dims.length;
  if (rank <= 1) o.set(a);
  else if (strides[rank - 1] === 1) copyRuns(a, o, dims, strides);
  else {
    stridedWalk(dims, strides, strides, (i, ia) => {
      o[i] = a[ia]!;
    });
  }
  return new Tensor(x.dtype, shape, o);
}

/**
 * A transpose whose innermost axis is contiguous in the input: runs of dims[last] elements copied
 * by a plain loop, the outer axes walked once per run.
 */
function copyRuns(a: Storage, o: Storage, dims: readonly number[], strides: readonly number[]): void {
  const outer = dims.length - 1;
  const len = dims[outer]!;
  const idx = new Array<number>(outer).fill(0);
  let src = 0;
  for (let at = 0; at < o.length; at += len) {
    for (let j = 0; j < len; j++) o[at + j] = a[src + j]!;
    for (let d = outer - 1; d >= 0; d--) {
      idx[d]!++;
      src += strides[d]!;
      if (idx[d]! < dims[d]!) break;
      src -= strides[d]! * dims[d]!;
      idx[d] = 0;
    }
  }
}

function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = tryBroadcastShapes(x.shape, shape);
  if (out === null || out.length !== shape.length || out.some((d, i) => d !== shape[i])) {
    throw new ShapeError(`broadcastTo: ${fmtShape(x.shape)} does not broadcast to ${fmtShape(shape)}`);
  }
  // Uninit: the rows, or the walk over every index of the output.
  const o = allocateUninit(x.dtype, sizeOf(shape));
  const a = x.data;
  // Copied as rows (Note [row layouts]): a column fills each row with its value, a tile repeats.
  const layout = rowLayout(x.shape, x.shape, shape);
  if (layout !== null) {
    const { rows, cols } = layout;
    if (layout.a === 'scalar') o.fill(a[0]!);
    else if (layout.a === 'column') {
      for (let r = 0, at = 0; r < rows; r++, at += cols) {
        const v = a[r]!;
        for (let j = 0; j < cols; j++) o[at + j] = v;
      }
    } else for (let r = 0; r < rows; r++) o.set(a, r * cols);
  } else {
    const sa = broadcastStrides(x.shape, shape);
    stridedWalk(shape, sa, sa, (i, ia) => {
      o[i] = a[ia]!;
    });
  }
  return new Tensor(x.dtype, [...shape], o);
}

/** Iterates the rows along `axis`: outer * inner rows of `len` elements spaced by `inner`. */
function alongAxis(
  shape: readonly number[],
  axis: number,
  f: (base: number, len: number, step: number) => void,
): void {
  const len = shape[axis]!;
  let outer = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i]!;
  let inner = 1;
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i]!;
  for (let o = 0; o < outer; o++) for (let j = 0; j < inner; j++) f(o * len * inner + j, len, inner);
}

function softmaxLike(x: Tensor, axis: number, log: boolean): Tensor {
  const a = x.data;
  // Uninit: the rows along `axis` (outer * inner of them, `len` long) cover every element.
  const o = allocateUninit(x.dtype, x.size);
  alongAxis(x.shape, axis, (base, len, step) => {
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0, p = base; i < len; i++, p += step) if (a[p]! > max) max = a[p]!;
    if (max === Number.NEGATIVE_INFINITY) max = 0;
    let sum = 0;
    for (let i = 0, p = base; i < len; i++, p += step) sum += Math.exp(a[p]! - max);
    if (log) {
      // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to the ulp of max.
      const logSum = Math.log(sum);
      for (let i = 0, p = base; i < len; i++, p += step) o[p] = a[p]! - max - logSum;
    } else {
      for (let i = 0, p = base; i < len; i++, p += step) o[p] = Math.exp(a[p]! - max) / sum;
    }
  });
  return new Tensor(x.dtype, x.shape, o);
}

function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  // Uninit: the walk visits every index of the output.
  const o = allocateUninit(x.dtype, sizeOf(size));
  const st = stridesOf(x.shape);
  let base = 0;
  for (let d = 0; d < begin.length; d++) base += begin[d]! * st[d]!;
  const a = x.data;
  stridedWalk(size, st, st, (i, ia) => {
    o[i] = a[base + ia]!;
  });
  return new Tensor(x.dtype, [...size], o);
}

function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  const shape = x.shape.map((d, i) => d + before[i]! + after[i]!);
  const o = allocate(x.dtype, sizeOf(shape));
  const st = stridesOf(shape);
  let base = 0;
  for (let d = 0; d < before.length; d++) base += before[d]! * st[d]!;
  const a = x.data;
  stridedWalk(x.shape, st, st, (i, io) => {
    o[base + io] = a[i]!;
  });
  return new Tensor(x.dtype, shape, o);
}

function concat(xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0]!;
  const shape = [...first.shape];
  shape[axis] = xs.reduce((s, t) => s + t.shape[axis]!, 0);
  // Uninit: per outer row, the inputs' rows fill [offset, offset + row) side by side, rowOut in all.
  const o = allocateUninit(first.dtype, sizeOf(shape));
  let outer = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i]!;
  const rowOut = sizeOf(shape.slice(axis));
  let offset = 0;
  for (const t of xs) {
    const row = sizeOf(t.shape.slice(axis));
    for (let r = 0; r < outer; r++) o.set(t.data.subarray(r * row, (r + 1) * row), r * rowOut + offset);
    offset += row;
  }
  return new Tensor(first.dtype, shape, o);
}

function checkIndex(v: number, size: number, where: string): number {
  if (!Number.isInteger(v) || v < 0 || v >= size) {
    throw new InputError(`${where}: index ${v} is not an integer in [0, ${size})`, {
      expected: `[0, ${size})`,
      found: v,
    });
  }
  return v;
}

function gather(table: Tensor, indices: Tensor, axis: number): Tensor {
  const outer = sizeOf(table.shape.slice(0, axis));
  const rows = table.shape[axis]!;
  const inner = sizeOf(table.shape.slice(axis + 1));
  const shape = [...table.shape.slice(0, axis), ...indices.shape, ...table.shape.slice(axis + 1)];
  // Uninit: outer * k rows of inner elements, each set (or an index error throws).
  const o = allocateUninit(table.dtype, sizeOf(shape));
  const idx = indices.data;
  const k = idx.length;
  for (let r = 0; r < outer; r++) {
    for (let j = 0; j < k; j++) {
      const row = checkIndex(idx[j]!, rows, 'gather');
      const src = (r * rows + row) * inner;
      o.set(table.data.subarray(src, src + inner), (r * k + j) * inner);
    }
  }
  return new Tensor(table.dtype, shape, o);
}

function scatterAdd(updates: Tensor, indices: Tensor, shape: readonly number[], axis: number): Tensor {
  const outer = sizeOf(shape.slice(0, axis));
  const rows = shape[axis]!;
  const inner = sizeOf(shape.slice(axis + 1));
  // Accumulate in float64 in increasing index order, round once: deterministic whatever the duplicates.
  const acc = new Float64Array(sizeOf(shape));
  const idx = indices.data;
  const k = idx.length;
  const u = updates.data;
  for (let r = 0; r < outer; r++) {
    for (let j = 0; j < k; j++) {
      const row = checkIndex(idx[j]!, rows, 'scatterAdd');
      const dst = (r * rows + row) * inner;
      const src = (r * k + j) * inner;
      for (let i = 0; i < inner; i++) acc[dst + i] = acc[dst + i]! + u[src + i]!;
    }
  }
  // Uninit: set writes all of it.
  const o = allocateUninit(updates.dtype, acc.length);
  o.set(acc);
  return new Tensor(updates.dtype, [...shape], o);
}

function oneHot(indices: Tensor, depth: number, dtype: Tensor['dtype']): Tensor {
  const n = indices.size;
  const o: Storage = allocate(dtype, n * depth);
  for (let i = 0; i < n; i++) o[i * depth + checkIndex(indices.data[i]!, depth, 'oneHot')] = 1;
  return new Tensor(dtype, [...indices.shape, depth], o);
}

/** The sum of squares in float64, in the order of Note [global norm order] (src/optim/spec.ts). */
function sumSquares(x: Tensor): number {
  return x.data instanceof Float32Array ? sumSquares32(x.data) : sumSquares64(x.data as Float64Array);
}

// One loop per element type, so each stays monomorphic; four partial sums, so the adds do not wait
// on each other (a single running sum is bound by the add's latency): 0.10 ms against 0.17 for the
// MNIST MLP's 235k float32 gradients. The wasm kernel keeps this order exactly.
function sumSquares32(d: Float32Array): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = d.length - (d.length % 4);
  for (let i = 0; i < n; i += 4) {
    s0 += d[i]! * d[i]!;
    s1 += d[i + 1]! * d[i + 1]!;
    s2 += d[i + 2]! * d[i + 2]!;
    s3 += d[i + 3]! * d[i + 3]!;
  }
  for (let i = n; i < d.length; i++) s0 += d[i]! * d[i]!;
  return s0 + s1 + (s2 + s3);
}

function sumSquares64(d: Float64Array): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = d.length - (d.length % 4);
  for (let i = 0; i < n; i += 4) {
    s0 += d[i]! * d[i]!;
    s1 += d[i + 1]! * d[i + 1]!;
    s2 += d[i + 2]! * d[i + 2]!;
    s3 += d[i + 3]! * d[i + 3]!;
  }
  for (let i = n; i < d.length; i++) s0 += d[i]! * d[i]!;
  return s0 + s1 + (s2 + s3);
}

export const tsKernels: Kernels = {
  unary,
  binary,
  reduce,
  matmul,
  transpose,
  broadcastTo,
  softmax: (x, axis) => softmaxLike(x, axis, false),
  logSoftmax: (x, axis) => softmaxLike(x, axis, true),
  slice,
  pad,
  concat,
  gather,
  scatterAdd,
  oneHot,
  sumSquares,
  where,
  argmax,
  im2col,
  col2im,
  conv2d: (x, w, win, groups) => conv2dByPatches(tsKernels, x, w, win, groups),
  conv2dInputGrad: (g, w, win, groups, shape) =>
    conv2dInputGradByPatches(tsKernels, g, w, win, groups, shape),
  conv2dWeightGrad: (x, g, win, groups) => conv2dWeightGradByPatches(tsKernels, x, g, win, groups),
  maxPool2d,
  maxPool2dGrad,
  maxPool2dSelect,
  avgPool2d,
  avgPool2dGrad,
};

setFallbackKernels(tsKernels);
