import { GraphBuilder } from '../graph/builder.ts';
import type { Graph } from '../graph/graph.ts';
import { type Activation, mlp } from '../graph/nn.ts';

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
