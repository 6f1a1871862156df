import { InputError } from '../errors.ts';
import { GraphBuilder } from '../graph/builder.ts';
import type { Graph, Node } from '../graph/graph.ts';
import {
  type Activation,
  conv2d,
  dense,
  embedding,
  layerNorm,
  mlp,
  positionalEmbedding,
  transformerBlock,
} from '../graph/nn.ts';

/**
 * An MLP classifier: inputs x [B, features] and y [B] (class indices), outputs `logits` [B, classes]
 * and `loss` (softmax cross-entropy, mean over the batch).
 */
export function mlpClassifier(options: {
  features: number;
  hidden: readonly number[];
  classes: number;
  activation?: Activation;
}): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', options.features]);
  const y = b.input('y', ['B']);
  const logits = b.output(
    'logits',
    mlp(b, x, [...options.hidden, options.classes], {
      name: 'mlp',
      activation: options.activation ?? 'relu',
    }),
  );
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  return b.build();
}

/**
 * A transformer sequence classifier: tokens x [B, length] (integer values), embedded with learned
 * positions, `layers` pre-norm blocks, a final layerNorm, the mean over positions, and a linear
 * head: outputs `logits` [B, classes] and `loss` (softmax cross-entropy against y [B]).
 */
export function transformerClassifier(options: {
  vocab: number;
  length: number;
  dim: number;
  heads: number;
  layers: number;
  classes: number;
  causal?: boolean;
  dropout?: number;
}): Graph {
  const { vocab, length, dim, heads, layers, classes, causal = false, dropout = 0 } = options;
  const b = new GraphBuilder();
  const x = b.input('x', ['B', length]);
  const y = b.input('y', ['B']);
  let h = positionalEmbedding(b, embedding(b, x, vocab, dim, { name: 'tokens' }), { name: 'positions' });
  if (dropout > 0) h = b.dropout(h, dropout);
  for (let i = 0; i < layers; i++) h = transformerBlock(b, h, { name: `block${i}`, heads, causal, dropout });
  const pooled = b.mean(layerNorm(b, h, { name: 'norm' }), 1);
  const logits = b.output('logits', dense(b, pooled, classes, { name: 'head' }));
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  return b.build();
}

/** Options of `cnnClassifier`: the image, the convolution blocks, the dense layers and the classes. */
export interface CnnClassifierOptions {
  /** Image height in pixels (28 for MNIST). */
  height: number;
  /** Image width in pixels (28 for MNIST). */
  width: number;
  /** Channels per pixel (default 1: grey levels). */
  channels?: number;
  /** Filters of each convolution block, in order (default [6, 16], LeNet-5's). */
  filters?: readonly number[];
  /** The square kernel of every convolution, an odd size (default 5). */
  kernel?: number;
  /** Units of each hidden dense layer after the blocks (default [120, 84], LeNet-5's). */
  hidden?: readonly number[];
  /** Classes: the width of `logits`. */
  classes: number;
  /** After each convolution and hidden dense layer (default 'relu'). */
  activation?: Activation;
  /** Dropout rate on the flattened features and on each hidden dense layer's output (default 0). */
  dropout?: number;
}

/**
 * A convolutional classifier in the shape of LeNet-5: inputs x [B, height*width*channels] (flat
 * pixels, row-major with channels last, as `loadMnist` gives them; viewed in the graph as the NHWC
 * image [B, height, width, channels]) and y [B] (class indices). Each block is a `conv2d` layer
 * `conv{i}` (kernel x kernel, stride 1, zero padding (kernel-1)/2 so the size is kept), the
 * activation, and a 2x2 max pool (stride 2, halving the size, rounded down); then the features are
 * flattened and go through the hidden dense layers `fc.{i}` and a linear one to the classes. Outputs
 * `logits` [B, classes] and `loss` (softmax cross-entropy, mean over the batch), like
 * `mlpClassifier`, so `Trainer`, `evaluateClassifier` and `predict` take it unchanged.
 *
 * The defaults are LeNet-5's sizes (6 and 16 filters of 5x5, dense layers of 120 and 84 units) with
 * ReLU and max pooling, as it is usually built today: on 28x28 digits that is 28 -> 14 -> 7 pixels,
 * 784 features, about 107,000 parameters.
 */
export function cnnClassifier(options: CnnClassifierOptions): Graph {
  const { height, width, channels = 1, classes, activation = 'relu', dropout = 0 } = options;
  const filters = options.filters ?? [6, 16];
  const hidden = options.hidden ?? [120, 84];
  const kernel = options.kernel ?? 5;
  const where = 'cnnClassifier';
  for (const [name, value] of [
    ['height', height],
    ['width', width],
    ['channels', channels],
    ['classes', classes],
    ...filters.map((f, i) => [`filters[${i}]`, f] as const),
    ...hidden.map((h, i) => [`hidden[${i}]`, h] as const),
  ] as const) {
    if (!Number.isInteger(value) || value < 1)
      throw new InputError(`${where}: ${name} must be an integer >= 1, found ${JSON.stringify(value)}`, {
        option: name,
        expected: 'an integer >= 1',
        found: value,
      });
  }
  if (!Number.isInteger(kernel) || kernel < 1 || kernel % 2 === 0)
    throw new InputError(`${where}: kernel must be an odd integer >= 1, found ${JSON.stringify(kernel)}`, {
      option: 'kernel',
      expected: 'an odd integer >= 1 (the padding (kernel-1)/2 keeps the size)',
      found: kernel,
    });
  if (!(dropout >= 0 && dropout < 1))
    throw new InputError(`${where}: dropout must be in [0, 1), found ${JSON.stringify(dropout)}`, {
      option: 'dropout',
      expected: 'a rate in [0, 1)',
      found: dropout,
    });
  // Each 2x2 pool halves the image, rounding down: it must keep at least one pixel.
  const smallest = Math.min(height, width);
  if (smallest >> filters.length < 1)
    throw new InputError(
      `${where}: ${filters.length} blocks halve the image ${filters.length} times, and a ${height}x${width} image has no pixel left`,
      {
        option: 'filters',
        expected: `at most ${Math.floor(Math.log2(smallest))} blocks`,
        found: filters.length,
      },
    );
  const b = new GraphBuilder();
  const x = b.input('x', ['B', height * width * channels]);
  const y = b.input('y', ['B']);
  let h = b.reshape(x, ['B', height, width, channels]);
  filters.forEach((f, i) => {
    h = conv2d(b, h, f, kernel, { name: `conv${i}`, padding: (kernel - 1) / 2, activation });
    h = b.maxPool2d(h, 2);
  });
  h = b.flatten(h);
  const drop = (t: Node) => (dropout > 0 ? b.dropout(t, dropout) : t);
  h = drop(h);
  hidden.forEach((units, i) => {
    h = drop(dense(b, h, units, { name: `fc.${i}`, activation }));
  });
  const logits = b.output('logits', dense(b, h, classes, { name: `fc.${hidden.length}` }));
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  return b.build();
}
