import { fmtShape, InputError, ShapeError } from '../errors.ts';
import {
  type BinaryKind,
  type Kernels,
  type ReduceKind,
  setFallbackKernels,
  type UnaryKind,
} from './kernels.ts';
import { matmul } from './matmul.ts';
import { broadcastShapeOf, sizeOf, stridesOf, tryBroadcastShapes } from './shape.ts';
import { erf } from './special.ts';
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
      for (let i = 0; i < n; i++) o[i] = Math.exp(a[i]!);
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
      for (let i = 0; i < n; i++) o[i] = erf(a[i]!);
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
  // Uninit: every path below writes o[0..n) (the row path n / last rows of last; stridedWalk every i < n).
  const o = allocateUninit(a.dtype, n);
  // Fast paths (add/sub/mul/div are the hot ones) keep the loop body free of a call.
  if (x.length === n && y.length === n) {
    if (kind === 'add') for (let i = 0; i < n; i++) o[i] = x[i]! + y[i]!;
    else if (kind === 'sub') for (let i = 0; i < n; i++) o[i] = x[i]! - y[i]!;
    else if (kind === 'mul') for (let i = 0; i < n; i++) o[i] = x[i]! * y[i]!;
    else if (kind === 'div') for (let i = 0; i < n; i++) o[i] = x[i]! / y[i]!;
    else {
      const f = binFns[kind];
      for (let i = 0; i < n; i++) o[i] = f(x[i]!, y[i]!);
    }
    return new Tensor(a.dtype, shape, o);
  }
  if (y.length === 1 && x.length === n) {
    const s = y[0]!;
    if (kind === 'add') for (let i = 0; i < n; i++) o[i] = x[i]! + s;
    else if (kind === 'mul') for (let i = 0; i < n; i++) o[i] = x[i]! * s;
    else if (kind === 'sub') for (let i = 0; i < n; i++) o[i] = x[i]! - s;
    else if (kind === 'div') for (let i = 0; i < n; i++) o[i] = x[i]! / s;
    else {
      const f = binFns[kind];
      for (let i = 0; i < n; i++) o[i] = f(x[i]!, s);
    }
    return new Tensor(a.dtype, shape, o);
  }
  if (x.length === 1 && y.length === n) {
    const s = x[0]!;
    const f = binFns[kind];
    if (kind === 'mul') for (let i = 0; i < n; i++) o[i] = s * y[i]!;
    else if (kind === 'sub') for (let i = 0; i < n; i++) o[i] = s - y[i]!;
    else if (kind === 'add') for (let i = 0; i < n; i++) o[i] = s + y[i]!;
    else for (let i = 0; i < n; i++) o[i] = f(s, y[i]!);
    return new Tensor(a.dtype, shape, o);
  }
  // A row vector broadcast over the last axis (bias add): b has shape [..1.., C] with C the last dim.
  const last = shape[shape.length - 1] ?? 1;
  if (x.length === n && y.length === last && b.shape[b.shape.length - 1] === last) {
    const f = binFns[kind];
    if (kind === 'add') {
      for (let r = 0; r < n; r += last) for (let j = 0; j < last; j++) o[r + j] = x[r + j]! + y[j]!;
    } else {
      for (let r = 0; r < n; r += last) for (let j = 0; j < last; j++) o[r + j] = f(x[r + j]!, y[j]!);
    }
    return new Tensor(a.dtype, shape, o);
  }
  const f = binFns[kind];
  const sa = broadcastStrides(a.shape, shape);
  const sb = broadcastStrides(b.shape, shape);
  stridedWalk(shape, sa, sb, (i, ia, ib) => {
    o[i] = f(x[ia]!, y[ib]!);
  });
  return new Tensor(a.dtype, shape, o);
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
  const outStrides = broadcastStrides(shape, x.shape as number[]);
  const a = x.data;
  if (kind === 'sum') {
    // Accumulate in float64 in increasing input index order, round once.
    const acc = new Float64Array(n);
    if (n === 1) {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i]!;
      acc[0] = s;
    } else {
      stridedWalk(x.shape, outStrides, outStrides, (i, io) => {
        acc[io] = acc[io]! + a[i]!;
      });
    }
    // Uninit: set writes all n.
    const o = allocateUninit(x.dtype, n);
    o.set(acc);
    return new Tensor(x.dtype, shape, o);
  }
  const o = allocateUninit(x.dtype, n);
  o.fill(Number.NEGATIVE_INFINITY);
  stridedWalk(x.shape, outStrides, outStrides, (i, io) => {
    const v = a[i]!;
    if (v > o[io]! || Number.isNaN(v)) o[io] = v;
  });
  return new Tensor(x.dtype, shape, o);
}

function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((p) => x.shape[p]!);
  const st = stridesOf(x.shape);
  const src = perm.map((p) => st[p]!);
  // Uninit: the walk visits every index of the output.
  const o = allocateUninit(x.dtype, x.size);
  const a = x.data;
  stridedWalk(shape, src, src, (i, ia) => {
    o[i] = a[ia]!;
  });
  return new Tensor(x.dtype, shape, o);
}

function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = tryBroadcastShapes(x.shape, shape);
  if (out === null || out.length !== shape.length || out.some((d, i) => d !== shape[i])) {
    throw new ShapeError(`broadcastTo: ${fmtShape(x.shape)} does not broadcast to ${fmtShape(shape)}`);
  }
  // Uninit: fill, or the walk over every index of the output.
  const o = allocateUninit(x.dtype, sizeOf(shape));
  const a = x.data;
  if (a.length === 1) {
    o.fill(a[0]!);
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
  maxPool2d,
  maxPool2dGrad,
  maxPool2dSelect,
  avgPool2d,
  avgPool2dGrad,
};

setFallbackKernels(tsKernels);
