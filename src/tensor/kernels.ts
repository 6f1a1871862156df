import type { Tensor } from './tensor.ts';
import type { PoolWindow, Window2d } from './window.ts';

export type UnaryKind =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'square'
  | 'abs'
  | 'tanh'
  | 'sigmoid'
  | 'relu'
  | 'erf'
  | 'gelu'
  | 'geluGrad'
  | 'sign'
  | 'leakyRelu'
  | 'pow';

export type BinaryKind =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'maximum'
  | 'minimum'
  | 'greater'
  | 'greaterEqual'
  | 'equal';

export type ReduceKind = 'sum' | 'max';

/**
 * The compute kernels every op's forward goes through. Plain TypeScript kernels implement all of it
 * (`tsKernels`); a faster implementation may replace any subset with `useKernels`. Kernels allocate
 * fresh owned outputs and never write their inputs. Summation order inside a kernel is fixed, so a
 * kernel is a deterministic function of its inputs (the reference engine and the actor runtime call
 * the same kernels, which is what makes their gradients bitwise equal).
 */
export interface Kernels {
  /**
   * Elementwise unary; `param` is the slope of leakyRelu or the exponent of pow. `gelu` is x Phi(x)
   * and `geluGrad` its derivative Phi(x) + x phi(x), each in one pass (Note [fused GELU]).
   */
  unary(kind: UnaryKind, x: Tensor, param?: number): Tensor;
  /** Elementwise binary with NumPy broadcasting; comparisons give 1 or 0 in the input dtype. */
  binary(kind: BinaryKind, a: Tensor, b: Tensor): Tensor;
  /** Reduces over the given (sorted, distinct) axes; the reduced axes are kept with size 1. */
  reduce(kind: ReduceKind, x: Tensor, axes: readonly number[]): Tensor;
  /** Batched matmul over the last two dimensions, leading dimensions broadcast, operands transposed in place. */
  matmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor;
  /** The axes permuted by `perm`, copied into a fresh row-major tensor. */
  transpose(x: Tensor, perm: readonly number[]): Tensor;
  /** `x` broadcast to `shape`, materialized. */
  broadcastTo(x: Tensor, shape: readonly number[]): Tensor;
  /** Softmax along `axis`. */
  softmax(x: Tensor, axis: number): Tensor;
  /** Log-softmax along `axis`. */
  logSoftmax(x: Tensor, axis: number): Tensor;
  /** The block at `begin` of extent `size`. */
  slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor;
  /** Zero padding of `before[i]` and `after[i]` elements around axis i. */
  pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor;
  /** The tensors joined along `axis`. */
  concat(xs: readonly Tensor[], axis: number): Tensor;
  /** Rows of `table` along `axis` picked by the integer values of `indices`; output shape splices indices' shape in. */
  gather(table: Tensor, indices: Tensor, axis: number): Tensor;
  /** The adjoint of gather: adds each slice of `updates` into a zero tensor of `shape` at its index. */
  scatterAdd(updates: Tensor, indices: Tensor, shape: readonly number[], axis: number): Tensor;
  /** One-hot rows of length `depth` for the integer values of `indices`, in `like`'s dtype. */
  oneHot(indices: Tensor, depth: number, dtype: Tensor['dtype']): Tensor;
  /** a where `cond` is nonzero (NaN included), else b; the three broadcast, the output in a's dtype. */
  where(cond: Tensor, a: Tensor, b: Tensor): Tensor;
  /** The index of the first maximum along `axis` (the first NaN if any), as a number in x's dtype; the axis is removed. */
  argmax(x: Tensor, axis: number): Tensor;
  /** The patches of an NHWC image x [N, H, W, C] as [groups, N*OH*OW, KH*KW*C/groups] (src/tensor/window.ts). */
  im2col(x: Tensor, window: Window2d, groups: number): Tensor;
  /** The adjoint of im2col: patches added back into an image of `shape` [N, H, W, C]. */
  col2im(cols: Tensor, window: Window2d, groups: number, shape: readonly number[]): Tensor;
  /**
   * conv2d of an NHWC image x [N, H, W, C] with a filter w [KH, KW, C/groups, F] over `window`:
   * [N, OH, OW, F], im2col then a matmul, or what gives the same values (Note [conv2d layout]).
   */
  conv2d(x: Tensor, w: Tensor, window: Window2d, groups: number): Tensor;
  /** conv2d's gradient in its image: g [N, OH, OW, F] and the filter w to an image of `shape` [N, H, W, C]. */
  conv2dInputGrad(g: Tensor, w: Tensor, window: Window2d, groups: number, shape: readonly number[]): Tensor;
  /** conv2d's gradient in its filter: the image x and g [N, OH, OW, F] to a filter [KH, KW, C/groups, F]. */
  conv2dWeightGrad(x: Tensor, g: Tensor, window: Window2d, groups: number): Tensor;
  /** Max pooling of an NHWC image. */
  maxPool2d(x: Tensor, window: PoolWindow): Tensor;
  /** g added at the maximum of each window of x: the adjoint of max pooling at x. */
  maxPool2dGrad(x: Tensor, g: Tensor, window: PoolWindow): Tensor;
  /** h (shaped like x) at the maximum of each window of x: the adjoint of maxPool2dGrad in g. */
  maxPool2dSelect(x: Tensor, h: Tensor, window: PoolWindow): Tensor;
  /** Average pooling of an NHWC image, padding counted as zeros. */
  avgPool2d(x: Tensor, window: PoolWindow): Tensor;
  /** The adjoint of average pooling into an image of `shape` [N, H, W, C]. */
  avgPool2dGrad(g: Tensor, window: PoolWindow, shape: readonly number[]): Tensor;
  /**
   * The sum of the squares of every element, in float64, in the order of Note [global norm order]
   * (src/optim/spec.ts): the global gradient norm's per-parameter term.
   */
  sumSquares(x: Tensor): number;
}

let active: Kernels | null = null;
let fallback: Kernels | null = null;

/** Installs the plain TypeScript kernels (called once by the ts kernel module on load). */
export function setFallbackKernels(k: Kernels): void {
  fallback = k;
  if (active === null) active = k;
}

/** The kernels in use. */
export function kernels(): Kernels {
  if (active === null) throw new Error('kernels: no kernels installed (import ./kernels-ts.ts first)');
  return active;
}

/** Replaces some kernels with faster ones; the rest stay as they are. Returns a function that undoes it. */
export function useKernels(partial: Partial<Kernels>): () => void {
  const before = kernels();
  active = { ...before, ...partial };
  return () => {
    active = before;
  };
}

/** The plain TypeScript kernels: the fallback, and the oracle faster kernels are tested against. */
export function fallbackKernels(): Kernels {
  if (fallback === null) throw new Error('kernels: the TypeScript kernels are not loaded');
  return fallback;
}
