// Layers as functions of a GraphBuilder, built from the registered ops only: like the composite ops
// of micrograd, they need no gradient of their own.
import { InputError, ShapeError } from '../errors.ts';
import type { Conv2dOptions, Pair } from '../ops/ops.ts';
import type { Initializer } from '../tensor/init.ts';
import { normalizeAxes } from '../tensor/shape.ts';
import { type DType, tensor } from '../tensor/tensor.ts';
import type { GraphBuilder } from './builder.ts';
import type { Node } from './graph.ts';

/** The activations the layers apply by name. */
export type Activation = 'relu' | 'tanh' | 'gelu' | 'sigmoid';

/** Applies an activation by name; null is the identity. */
export function activate(b: GraphBuilder, x: Node, activation: Activation | null): Node {
  switch (activation) {
    case null:
      return x;
    case 'relu':
      return b.relu(x);
    case 'tanh':
      return b.tanh(x);
    case 'gelu':
      return b.gelu(x);
    case 'sigmoid':
      return b.sigmoid(x);
    default:
      throw new InputError(`activate: unknown activation ${JSON.stringify(activation)}`, {
        expected: "'relu' | 'tanh' | 'gelu' | 'sigmoid' | null",
        found: activation,
      });
  }
}

/** The size of axis `axis` of x, which a parameter's shape depends on, so it must be a number. */
function concreteDim(b: GraphBuilder, x: Node, axis: number, layer: string, name: string): number {
  const shape = b.shapeOf(x);
  const d = shape[axis];
  if (typeof d !== 'number') {
    throw new ShapeError(
      `${layer} '${name}': axis ${axis} of the input [${shape.join(',')}] sizes a parameter, so it must be a number, found ${JSON.stringify(d)}`,
      { node: name, expected: 'a numeric dimension', found: shape },
    );
  }
  return d;
}

/** Options of `dense`. */
export interface DenseOptions {
  /** Prefix of the parameter names: `${name}.w` [in, units] and `${name}.b` [units]. */
  name: string;
  /** Applied to the output (default none: a linear layer). */
  activation?: Activation | null;
  /** Default true. */
  bias?: boolean;
  /** The weight's initializer; default He normal before a relu, Glorot uniform otherwise. */
  init?: Initializer;
}

/** activation(x @ w + b) over the last axis of x [..., in], which must have rank >= 2. */
export function dense(b: GraphBuilder, x: Node, units: number, options: DenseOptions): Node {
  const { name, activation = null, bias = true } = options;
  const rank = b.shapeOf(x).length;
  if (rank < 2) {
    throw new ShapeError(
      `dense '${name}': input has shape [${b.shapeOf(x).join(',')}], expected rank >= 2 ([batch, features])`,
      { node: name, expected: 'rank >= 2', found: b.shapeOf(x) },
    );
  }
  const inputs = concreteDim(b, x, rank - 1, 'dense', name);
  const dtype = b.dtypeOf(x);
  const init = options.init ?? { kind: activation === 'relu' ? 'heNormal' : 'glorotUniform' };
  let y = b.matmul(x, b.param(`${name}.w`, [inputs, units], { init, dtype }));
  if (bias) y = b.add(y, b.param(`${name}.b`, [units], { init: { kind: 'zeros' }, dtype }));
  return activate(b, y, activation);
}

/** Options of `layerNorm`. */
export interface LayerNormOptions {
  /** Prefix of the parameter names: gain `${name}.g` (ones) and bias `${name}.b` (zeros), both [d]. */
  name: string;
  /** The normalized axis (default -1). */
  axis?: number;
  /** Added to the variance (default 1e-5). */
  eps?: number;
}

/**
 * (x - mean) / sqrt(var + eps) * gain + bias, mean and (biased) variance over `axis`, as PyTorch's
 * LayerNorm over one axis.
 */
export function layerNorm(b: GraphBuilder, x: Node, options: LayerNormOptions): Node {
  const { name, eps = 1e-5 } = options;
  const rank = b.shapeOf(x).length;
  const axis = normalizeAxes(options.axis ?? -1, rank, `layerNorm '${name}'`)[0]!;
  const d = concreteDim(b, x, axis, 'layerNorm', name);
  const dtype = b.dtypeOf(x);
  const centered = b.sub(x, b.mean(x, axis, true));
  const variance = b.mean(b.square(centered), axis, true);
  const normalized = b.div(centered, b.sqrt(b.add(variance, eps)));
  // Along a non-last axis, [d] is viewed as [d, 1, ..., 1] to broadcast against x.
  const view = [d, ...Array<number>(rank - 1 - axis).fill(1)];
  const toView = (p: Node) => (view.length === 1 ? p : b.reshape(p, view));
  const gain = b.param(`${name}.g`, [d], { init: { kind: 'ones' }, dtype });
  const bias = b.param(`${name}.b`, [d], { init: { kind: 'zeros' }, dtype });
  return b.add(b.mul(normalized, toView(gain)), toView(bias));
}

/** Options of `mlp`. */
export interface MlpOptions {
  /** Layer i is `dense` named `${name}.${i}`. */
  name: string;
  /** Between layers (default relu); the last layer is linear. */
  activation?: Activation;
}

/** Dense layers of the given sizes, the activation between them. */
export function mlp(b: GraphBuilder, x: Node, sizes: readonly number[], options: MlpOptions): Node {
  const { name, activation = 'relu' } = options;
  if (sizes.length === 0)
    throw new InputError(`mlp '${name}': expected at least one layer size`, { node: name, found: sizes });
  return sizes.reduce(
    (h, units, i) =>
      dense(b, h, units, { name: `${name}.${i}`, activation: i < sizes.length - 1 ? activation : null }),
    x,
  );
}

/** Options of `embedding`. */
export interface EmbeddingOptions {
  /** The table is the parameter `${name}.table` [vocab, dim]. */
  name: string;
  /** Default normal(0, 1), as PyTorch's Embedding. */
  init?: Initializer;
}

/** Rows of a `[vocab, dim]` table at integer `indices` `[...]`: shape `[..., dim]`, in the indices' dtype. */
export function embedding(
  b: GraphBuilder,
  indices: Node,
  vocab: number,
  dim: number,
  options: EmbeddingOptions,
): Node {
  const init = options.init ?? { kind: 'normal', mean: 0, std: 1 };
  const table = b.param(`${options.name}.table`, [vocab, dim], { init, dtype: b.dtypeOf(indices) });
  return b.gather(table, indices);
}

/** Options of the `conv2d` layer: the op's options, and an activation after the bias. */
export interface Conv2dLayerOptions extends Conv2dOptions {
  /** Prefix of the parameter names: the filter `${name}.w` [KH, KW, C/groups, filters], the bias `${name}.b` [filters]. */
  name: string;
  /** Applied after the bias (default none). */
  activation?: Activation | null;
  /** Default true. */
  bias?: boolean;
  /**
   * The filter's initializer. Default: normal with std sqrt(2 / fanIn) before a relu (He), else
   * uniform within sqrt(6 / (fanIn + fanOut)) (Glorot), fanIn = KH*KW*C/groups and fanOut =
   * KH*KW*filters/groups, given as plain numbers: the named kinds take a filter's fans as a dense
   * layer's (src/tensor/init.ts).
   */
  init?: Initializer;
}

/**
 * activation(conv2d(x, w) + b) over an NHWC image x [N, H, W, C]: `filters` output channels, a
 * `kernel` window, the stride, padding, dilation and groups of `options`.
 */
export function conv2d(
  b: GraphBuilder,
  x: Node,
  filters: number,
  kernel: Pair,
  options: Conv2dLayerOptions,
): Node {
  const { name, activation = null, bias = true, init, ...conv } = options;
  if (b.shapeOf(x).length !== 4) {
    throw new ShapeError(
      `conv2d '${name}': input has shape [${b.shapeOf(x).join(',')}], expected an NHWC image [N, H, W, C]`,
      { node: name, expected: '[N, H, W, C]', found: b.shapeOf(x) },
    );
  }
  const channels = concreteDim(b, x, 3, 'conv2d', name);
  const groups = conv.groups ?? 1;
  if (!Number.isInteger(channels / groups) || !Number.isInteger(filters / groups)) {
    throw new ShapeError(
      `conv2d '${name}': ${channels} channels and ${filters} filters do not split into ${groups} groups`,
      {
        node: name,
        expected: `multiples of ${groups}`,
        found: [channels, filters],
      },
    );
  }
  const [kh, kw] = typeof kernel === 'number' ? [kernel, kernel] : (kernel as [number, number]);
  const [fanIn, fanOut] = [(kh * kw * channels) / groups, (kh * kw * filters) / groups];
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const filterInit: Initializer =
    init ??
    (activation === 'relu'
      ? { kind: 'normal', mean: 0, std: Math.sqrt(2 / fanIn) }
      : { kind: 'uniform', low: -limit, high: limit });
  const dtype = b.dtypeOf(x);
  const w = b.param(`${name}.w`, [kh, kw, channels / groups, filters], { init: filterInit, dtype });
  let y = b.conv2d(x, w, conv);
  if (bias) y = b.add(y, b.param(`${name}.b`, [filters], { init: { kind: 'zeros' }, dtype }));
  return activate(b, y, activation);
}

/**
 * The [size, size] mask of causal attention, a constant: 1 where key j <= query i, else 0. With
 * `b.where(mask, scores, -1e9)` each query row of scores [..., size, size] sees itself and the
 * positions before it; a finite fill keeps a fully masked row uniform after softmax, not NaN.
 */
export function causalMask(b: GraphBuilder, size: number, dtype: DType = 'float32'): Node {
  if (!Number.isInteger(size) || size < 1) {
    throw new InputError(`causalMask: expected a size (an integer >= 1), found ${JSON.stringify(size)}`, {
      expected: 'an integer >= 1',
      found: size,
    });
  }
  const values = Array.from({ length: size * size }, (_, k) => (k % size <= Math.floor(k / size) ? 1 : 0));
  return b.const(tensor(values, { shape: [size, size], dtype }));
}
