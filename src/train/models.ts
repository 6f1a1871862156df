import { GraphBuilder } from '../graph/builder.ts';
import type { Graph } from '../graph/graph.ts';
import {
  type Activation,
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
