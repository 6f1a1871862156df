import { fmtFound, OpError } from '../errors.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { isConcrete, normalizeAxes, normalizeAxis, sizeOf } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';
import type { Attrs } from './op.ts';

/**
 * A copy of an array attribute (the caller keeps its own); anything else as it is, for the op's
 * attribute check to refuse with its name (`checkAttrs`).
 */
const copied = <V>(v: readonly V[]): V[] => (Array.isArray(v) ? [...v] : (v as V[]));

/**
 * Options of `matmul`: which operand to use transposed (over its last two axes), without
 * transposing it in memory.
 */
export interface DropoutOptions<T> {
  /** The first word of the Philox key (default 0). */
  seed?: number;
  /** The second: which random stream (default: the dropout node's id where values are graph nodes, else 0). */
  stream?: number;
  /** The key [step, microbatch, replica, training]: default a new `stepKey` (the run's own). */
  key?: T;
}

/** Options of `matmul`: either operand transposed. */
export interface MatmulOptions {
  /** Use `a` transposed (default false). */
  transA?: boolean;
  /** Use `b` transposed (default false). */
  transB?: boolean;
}

/** Along height and width: one number for both, or [height, width]. */
export type Pair = number | readonly number[];

/** Options of `conv2d` and its gradient halves: stride, padding, dilation and groups. */
export interface Conv2dOptions {
  /** Default 1. */
  stride?: Pair;
  /** Zeros on both sides; default 0. */
  padding?: Pair;
  /** Default 1. */
  dilation?: Pair;
  /** Default 1; the channels and the filters must be multiples of it. */
  groups?: number;
}

/** Options of the pooling ops: stride (default the kernel) and padding. */
export interface Pool2dOptions {
  /** Default: the kernel (windows side by side). */
  stride?: Pair;
  /** Zeros on both sides, below the kernel; default 0. */
  padding?: Pair;
}

/** A pair as ops store it: [v, v] for a number, a copy of an array; anything else as it is, for checkAttrs. */
const pair = (v: unknown): unknown => (typeof v === 'number' ? [v, v] : Array.isArray(v) ? [...v] : v);

/** An options argument: an object, or an OpError naming the op and what it takes. */
function optionsOf<O extends object>(op: string, options: O, expected: string): O {
  if (typeof options !== 'object' || options === null) {
    throw new OpError(`${op}: options: expected ${expected}, found ${fmtFound(options)}`, {
      op,
      expected,
      found: options,
    });
  }
  return options;
}

const CONV_OPTIONS = '{stride?, padding?, dilation?, groups?}';
const POOL_OPTIONS = '{stride?, padding?}';

/**
 * The ops interface: one method per op over a value type T. `EagerOps` (T = Tensor) computes;
 * `GraphBuilder` (T = a graph node) records. VJPs are written against this class, so one rule serves
 * the reference engine, the actors and symbol-to-symbol differentiation alike. Numbers given where a
 * value is expected become scalar constants of the other operand's dtype.
 */
export abstract class Ops<T> {
  /**
   * Applies the op named `op` to `inputs` with its attributes: computes it (EagerOps) or records a
   * node (GraphBuilder).
   */
  abstract apply(op: string, inputs: readonly T[], attrs?: Attrs): T;
  /** The shape of a value (symbolic dimensions stay names in a graph). */
  abstract shapeOf(x: T): Shape;
  /** The dtype of a value. */
  abstract dtypeOf(x: T): DType;
  /** A scalar constant. */
  abstract constant(value: number, dtype: DType): T;

  /** The number of elements along `axes` of a shape, as a scalar (symbolic dimensions resolved at run time). */
  count(shape: Shape, axes: readonly number[], dtype: DType): T {
    const dims = axes.map((a) => shape[a]!);
    if (isConcrete(dims)) return this.constant(sizeOf(dims), dtype);
    return this.apply('dimSize', [], { dims, dtype });
  }

  protected lift(a: T | number, b: T | number): [T, T] {
    if (typeof a === 'number' && typeof b === 'number') {
      return [this.constant(a, 'float32'), this.constant(b, 'float32')];
    }
    if (typeof a === 'number') return [this.constant(a, this.dtypeOf(b as T)), b as T];
    if (typeof b === 'number') return [a, this.constant(b, this.dtypeOf(a))];
    return [a, b];
  }

  private bin(op: string, a: T | number, b: T | number): T {
    return this.apply(op, this.lift(a, b));
  }

  /** a + b, elementwise with broadcasting. */
  add(a: T | number, b: T | number): T {
    return this.bin('add', a, b);
  }
  /** a - b, elementwise with broadcasting. */
  sub(a: T | number, b: T | number): T {
    return this.bin('sub', a, b);
  }
  /** a * b, elementwise with broadcasting. */
  mul(a: T | number, b: T | number): T {
    return this.bin('mul', a, b);
  }
  /** a / b, elementwise with broadcasting. */
  div(a: T | number, b: T | number): T {
    return this.bin('div', a, b);
  }
  /** The larger of a and b, elementwise with broadcasting (on ties the gradient is split evenly). */
  maximum(a: T | number, b: T | number): T {
    return this.bin('maximum', a, b);
  }
  /** The smaller of a and b, elementwise with broadcasting (on ties the gradient is split evenly). */
  minimum(a: T | number, b: T | number): T {
    return this.bin('minimum', a, b);
  }
  /** 1 where a > b, else 0 (no gradient). */
  greater(a: T | number, b: T | number): T {
    return this.bin('greater', a, b);
  }
  /** 1 where a >= b, else 0 (no gradient). */
  greaterEqual(a: T | number, b: T | number): T {
    return this.bin('greaterEqual', a, b);
  }
  /** 1 where a == b, else 0 (no gradient). */
  equal(a: T | number, b: T | number): T {
    return this.bin('equal', a, b);
  }

  /** -x. */
  neg(x: T): T {
    return this.apply('neg', [x]);
  }
  /** e to the x, elementwise. */
  exp(x: T): T {
    return this.apply('exp', [x]);
  }
  /** The natural logarithm, elementwise (for x > 0). */
  log(x: T): T {
    return this.apply('log', [x]);
  }
  /** The square root, elementwise (for x >= 0). */
  sqrt(x: T): T {
    return this.apply('sqrt', [x]);
  }
  /** x * x, elementwise. */
  square(x: T): T {
    return this.apply('square', [x]);
  }
  /** x to a constant power. */
  pow(x: T, exponent: number): T {
    return this.apply('pow', [x], { exponent });
  }
  /** |x|, elementwise (gradient sign(x), so 0 at 0). */
  abs(x: T): T {
    return this.apply('abs', [x]);
  }
  /** -1, 0 or 1 by the sign of x (no gradient). */
  sign(x: T): T {
    return this.apply('sign', [x]);
  }
  /** The hyperbolic tangent, elementwise. */
  tanh(x: T): T {
    return this.apply('tanh', [x]);
  }
  /** 1 / (1 + exp(-x)), elementwise. */
  sigmoid(x: T): T {
    return this.apply('sigmoid', [x]);
  }
  /** max(x, 0), elementwise (gradient 0 at 0). */
  relu(x: T): T {
    return this.apply('relu', [x]);
  }
  /** x where x > 0, else alpha * x (default alpha 0.01). */
  leakyRelu(x: T, alpha = 0.01): T {
    return this.apply('leakyRelu', [x], { alpha });
  }
  /** The exact GELU, x * Phi(x), as PyTorch's default. */
  gelu(x: T): T {
    return this.apply('gelu', [x]);
  }
  /** GELU's derivative, Phi(x) + x * phi(x), elementwise: gelu's VJP as one op (Note [fused GELU]). */
  geluGrad(x: T): T {
    return this.apply('geluGrad', [x]);
  }
  /** The error function, elementwise. */
  erf(x: T): T {
    return this.apply('erf', [x]);
  }

  /**
   * The matrix product over the last two axes, batched over the leading ones (which broadcast);
   * `options` transposes either operand.
   */
  matmul(a: T, b: T, options: MatmulOptions = {}): T {
    const { transA = false, transB = false } = optionsOf('matmul', options, '{transA?, transB?}');
    return this.apply('matmul', [a, b], { transA, transB });
  }
  /** Permutes the axes; without `perm`, reverses them. */
  transpose(x: T, perm?: readonly number[]): T {
    const rank = this.shapeOf(x).length;
    return this.apply('transpose', [x], {
      perm: perm === undefined ? Array.from({ length: rank }, (_, i) => rank - 1 - i) : copied(perm),
    });
  }
  /** A new shape with the same number of elements; one dimension may be -1 (inferred). */
  reshape(x: T, shape: Shape): T {
    return this.apply('reshape', [x], { shape: copied(shape) });
  }
  /** x repeated along new leading axes and axes of size 1 to `shape`, as broadcasting does. */
  broadcastTo(x: T, shape: Shape): T {
    return this.apply('broadcastTo', [x], { shape: copied(shape) });
  }

  private axesOf(x: T, axes: number | readonly number[] | undefined, op: string): number[] {
    return normalizeAxes(axes, this.shapeOf(x).length, op);
  }
  /** The sum over `axes` (default all), keeping them as size 1 with `keepdims`. */
  sum(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('sum', [x], { axes: this.axesOf(x, axes, 'sum'), keepdims });
  }
  /** The mean over `axes` (default all), keeping them as size 1 with `keepdims`. */
  mean(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('mean', [x], { axes: this.axesOf(x, axes, 'mean'), keepdims });
  }
  /**
   * The maximum over `axes` (default all), keeping them as size 1 with `keepdims`; the gradient is
   * split evenly between tied maxima.
   */
  max(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('max', [x], { axes: this.axesOf(x, axes, 'max'), keepdims });
  }
  /** exp(x) normalized to sum to 1 along `axis` (default the last). */
  softmax(x: T, axis = -1): T {
    return this.apply('softmax', [x], { axis: normalizeAxis(axis, this.shapeOf(x).length, 'softmax') });
  }
  /** The logarithm of softmax along `axis` (default the last), computed stably. */
  logSoftmax(x: T, axis = -1): T {
    return this.apply('logSoftmax', [x], { axis: normalizeAxis(axis, this.shapeOf(x).length, 'logSoftmax') });
  }
  /**
   * Softmax cross-entropy over the last axis of `logits` [N, C], averaged over the batch. `labels` are
   * class indices [N] (integer values) or one-hot / probability rows [N, C].
   */
  softmaxCrossEntropy(logits: T, labels: T): T {
    return this.apply('softmaxCrossEntropy', [logits, labels]);
  }
  /**
   * The gradient of softmaxCrossEntropy with respect to its logits, (softmax(z) * sum(t) - t) * scale,
   * as one op (Note [fused cross-entropy gradient]); `scale` is a scalar.
   */
  softmaxCrossEntropyGrad(logits: T, labels: T, scale: T): T {
    return this.apply('softmaxCrossEntropyGrad', [logits, labels, scale]);
  }
  /** Mean squared error over all elements. */
  mse(prediction: T, target: T): T {
    return this.apply('mse', [prediction, target]);
  }

  /** The inputs joined along `axis` (default 0); every other axis must agree. */
  concat(xs: readonly T[], axis = 0): T {
    if (!Array.isArray(xs)) {
      throw new OpError(`concat: expected an array of inputs, found ${fmtFound(xs)}`, {
        op: 'concat',
        expected: 'an array of inputs',
        found: xs,
      });
    }
    const first = xs[0];
    const rank = first === undefined ? 1 : this.shapeOf(first).length;
    return this.apply('concat', xs, { axis: normalizeAxis(axis, rank, 'concat') });
  }
  /** The block starting at `begin` of extent `size` (-1: to the end of that axis). */
  slice(x: T, begin: readonly number[], size: readonly Dim[]): T {
    return this.apply('slice', [x], { begin: copied(begin), size: copied(size) });
  }
  /** Zero padding: `before[i]` and `after[i]` elements around axis i. */
  pad(x: T, before: readonly number[], after: readonly number[]): T {
    return this.apply('pad', [x], { before: copied(before), after: copied(after) });
  }
  /** Embedding lookup: rows of `table` along `axis` at the integer values of `indices`. */
  gather(table: T, indices: T, axis = 0): T {
    return this.apply('gather', [table, indices], {
      axis: normalizeAxis(axis, this.shapeOf(table).length, 'gather'),
    });
  }
  /** The adjoint of gather: a zero tensor of `shape` with each slice of `updates` added at its index. */
  scatterAdd(updates: T, indices: T, shape: Shape, axis = 0): T {
    // An axis of `shape`: normalized when there is a shape to count it against (checkAttrs refuses any other).
    const at = Array.isArray(shape) ? normalizeAxis(axis, shape.length, 'scatterAdd') : axis;
    return this.apply('scatterAdd', [updates, indices], { shape: copied(shape), axis: at });
  }
  /**
   * Rows of `depth` zeros with a 1 at each integer index (no gradient), in `dtype` (default the
   * indices').
   */
  oneHot(indices: T, depth: number, dtype?: DType): T {
    return this.apply('oneHot', [indices], {
      depth,
      dtype: dtype === undefined ? this.dtypeOf(indices) : dtype,
    });
  }
  /** a where `cond` is nonzero, else b (broadcast); no gradient flows to `cond`. */
  where(cond: T, a: T | number, b: T | number): T {
    const [x, y] = this.lift(a, b);
    return this.apply('where', [cond, x, y]);
  }
  /** 1 where a < b, else 0: greater with the operands swapped. */
  less(a: T | number, b: T | number): T {
    return this.greater(b, a);
  }
  /** 1 where a <= b, else 0: greaterEqual with the operands swapped. */
  lessEqual(a: T | number, b: T | number): T {
    return this.greaterEqual(b, a);
  }
  /** The index of the maximum along `axis` (first among ties), in x's dtype; no gradient. */
  argmax(x: T, axis = -1): T {
    return this.apply('argmax', [x], { axis: normalizeAxis(axis, this.shapeOf(x).length, 'argmax') });
  }
  /** x [d0, ..., dk, ...] as [d0, ..., d(axis-1), the product of the rest]: a reshape. */
  flatten(x: T, axis = 1): T {
    const shape = this.shapeOf(x);
    const at = normalizeAxis(axis, shape.length, 'flatten');
    return this.reshape(x, [...shape.slice(0, at), -1]);
  }

  /**
   * 2-D convolution of an NHWC image x [N, H, W, C] with a filter w [KH, KW, C/groups, F]:
   * [N, OH, OW, F] (Note [conv2d layout] in src/ops/conv2d.ts).
   */
  conv2d(x: T, w: T, options: Conv2dOptions = {}): T {
    return this.apply('conv2d', [x, w], convAttrs('conv2d', options));
  }
  /** conv2d's gradient for its image of height and width `size`, from the output's cotangent g. */
  conv2dInputGrad(g: T, w: T, size: readonly number[], options: Conv2dOptions = {}): T {
    return this.apply('conv2dInputGrad', [g, w], {
      ...convAttrs('conv2dInputGrad', options),
      size: pair(size),
    });
  }
  /** conv2d's gradient for its filter of height and width `kernel`, from the output's cotangent g. */
  conv2dWeightGrad(x: T, g: T, kernel: readonly number[], options: Conv2dOptions = {}): T {
    return this.apply('conv2dWeightGrad', [x, g], {
      ...convAttrs('conv2dWeightGrad', options),
      kernel: pair(kernel),
    });
  }
  /** The maximum of each `kernel` window of an NHWC image x [N, H, W, C]. */
  maxPool2d(x: T, kernel: Pair, options: Pool2dOptions = {}): T {
    return this.apply('maxPool2d', [x], poolAttrs('maxPool2d', kernel, options));
  }
  /** g added at the maximum of each window of x: maxPool2d's VJP. */
  maxPool2dGrad(x: T, g: T, kernel: Pair, options: Pool2dOptions = {}): T {
    return this.apply('maxPool2dGrad', [x, g], poolAttrs('maxPool2dGrad', kernel, options));
  }
  /** h (shaped like x) at the maximum of each window of x: maxPool2dGrad's VJP. */
  maxPool2dSelect(x: T, h: T, kernel: Pair, options: Pool2dOptions = {}): T {
    return this.apply('maxPool2dSelect', [x, h], poolAttrs('maxPool2dSelect', kernel, options));
  }
  /** The mean of each `kernel` window of an NHWC image, padding counted as zeros. */
  avgPool2d(x: T, kernel: Pair, options: Pool2dOptions = {}): T {
    return this.apply('avgPool2d', [x], poolAttrs('avgPool2d', kernel, options));
  }
  /** avgPool2d's VJP into an image of height and width `size`. */
  avgPool2dGrad(g: T, size: readonly number[], kernel: Pair, options: Pool2dOptions = {}): T {
    return this.apply('avgPool2dGrad', [g], {
      ...poolAttrs('avgPool2dGrad', kernel, options),
      size: pair(size),
    });
  }

  /**
   * Inverted dropout: in training each element is zeroed with probability `rate` and the others are
   * scaled by 1 / (1 - rate); in evaluation, the identity. Its mask is a function of the key and the
   * element's index, the same on every engine and worker (Note [run context] in step-key.ts).
   */
  dropout(x: T, rate: number, options: DropoutOptions<T> = {}): T {
    // Only what is absent takes its default: anything else goes to the attribute check as it is.
    const key = options.key === undefined ? this.apply('stepKey', []) : options.key;
    const seed = options.seed === undefined ? 0 : options.seed;
    const stream = options.stream === undefined ? this.nextId() : options.stream;
    return this.apply('dropout', [x, key], { rate, seed, stream });
  }
  /** The id the next value gets where values are graph nodes (a dropout's default stream); 0 elsewhere. */
  protected nextId(): number {
    return 0;
  }
  /** The identity forward, no gradient backward. */
  stopGradient(x: T): T {
    return this.apply('stopGradient', [x]);
  }
}

function convAttrs(op: string, options: Conv2dOptions): Attrs {
  const { stride = 1, padding = 0, dilation = 1, groups = 1 } = optionsOf(op, options, CONV_OPTIONS);
  return { stride: pair(stride), padding: pair(padding), dilation: pair(dilation), groups };
}

function poolAttrs(op: string, kernel: Pair, options: Pool2dOptions): Attrs {
  const { stride = kernel, padding = 0 } = optionsOf(op, options, POOL_OPTIONS);
  return { kernel: pair(kernel), stride: pair(stride), padding: pair(padding) };
}
