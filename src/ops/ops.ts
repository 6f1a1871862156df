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

export interface DropoutOptions<T> {
  /** The first word of the Philox key (default 0). */
  seed?: number;
  /** The second: which random stream (default: the dropout node's id where values are graph nodes, else 0). */
  stream?: number;
  /** The key [step, microbatch, replica, training]: default a new `stepKey` (the run's own). */
  key?: T;
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * The ops interface: one method per op over a value type T. `EagerOps` (T = Tensor) computes;
 * `GraphBuilder` (T = a graph node) records. VJPs are written against this class, so one rule serves
 * the reference engine, the actors and symbol-to-symbol differentiation alike. Numbers given where a
 * value is expected become scalar constants of the other operand's dtype.
 */
export abstract class Ops<T> {
  abstract apply(op: string, inputs: readonly T[], attrs?: Attrs): T;
  abstract shapeOf(x: T): Shape;
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

  add(a: T | number, b: T | number): T {
    return this.bin('add', a, b);
  }
  sub(a: T | number, b: T | number): T {
    return this.bin('sub', a, b);
  }
  mul(a: T | number, b: T | number): T {
    return this.bin('mul', a, b);
  }
  div(a: T | number, b: T | number): T {
    return this.bin('div', a, b);
  }
  maximum(a: T | number, b: T | number): T {
    return this.bin('maximum', a, b);
  }
  minimum(a: T | number, b: T | number): T {
    return this.bin('minimum', a, b);
  }
  /** 1 where a > b, else 0 (no gradient). */
  greater(a: T | number, b: T | number): T {
    return this.bin('greater', a, b);
  }
  greaterEqual(a: T | number, b: T | number): T {
    return this.bin('greaterEqual', a, b);
  }
  equal(a: T | number, b: T | number): T {
    return this.bin('equal', a, b);
  }

  neg(x: T): T {
    return this.apply('neg', [x]);
  }
  exp(x: T): T {
    return this.apply('exp', [x]);
  }
  log(x: T): T {
    return this.apply('log', [x]);
  }
  sqrt(x: T): T {
    return this.apply('sqrt', [x]);
  }
  square(x: T): T {
    return this.apply('square', [x]);
  }
  /** x to a constant power. */
  pow(x: T, exponent: number): T {
    return this.apply('pow', [x], { exponent });
  }
  abs(x: T): T {
    return this.apply('abs', [x]);
  }
  sign(x: T): T {
    return this.apply('sign', [x]);
  }
  tanh(x: T): T {
    return this.apply('tanh', [x]);
  }
  sigmoid(x: T): T {
    return this.apply('sigmoid', [x]);
  }
  relu(x: T): T {
    return this.apply('relu', [x]);
  }
  leakyRelu(x: T, alpha = 0.01): T {
    return this.apply('leakyRelu', [x], { alpha });
  }
  /** The exact GELU, x * Phi(x), as PyTorch's default. */
  gelu(x: T): T {
    return this.apply('gelu', [x]);
  }
  erf(x: T): T {
    return this.apply('erf', [x]);
  }

  matmul(a: T, b: T, options: MatmulOptions = {}): T {
    if (typeof options !== 'object' || options === null) {
      throw new OpError(`matmul: options: expected {transA?, transB?}, found ${fmtFound(options)}`, {
        op: 'matmul',
        expected: '{transA?, transB?}',
        found: options,
      });
    }
    const { transA = false, transB = false } = options;
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
  broadcastTo(x: T, shape: Shape): T {
    return this.apply('broadcastTo', [x], { shape: copied(shape) });
  }

  private axesOf(x: T, axes: number | readonly number[] | undefined, op: string): number[] {
    return normalizeAxes(axes, this.shapeOf(x).length, op);
  }
  sum(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('sum', [x], { axes: this.axesOf(x, axes, 'sum'), keepdims });
  }
  mean(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('mean', [x], { axes: this.axesOf(x, axes, 'mean'), keepdims });
  }
  max(x: T, axes?: number | readonly number[], keepdims = false): T {
    return this.apply('max', [x], { axes: this.axesOf(x, axes, 'max'), keepdims });
  }
  softmax(x: T, axis = -1): T {
    return this.apply('softmax', [x], { axis: normalizeAxis(axis, this.shapeOf(x).length, 'softmax') });
  }
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
  oneHot(indices: T, depth: number, dtype?: DType): T {
    return this.apply('oneHot', [indices], {
      depth,
      dtype: dtype === undefined ? this.dtypeOf(indices) : dtype,
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
