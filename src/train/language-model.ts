// A character-level (or any token-level) transformer language model, as GPT-2 is built but small:
// the graph, and sampling text from it.
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../graph/builder.ts';
import type { Graph } from '../graph/graph.ts';
import { dense, embedding, layerNorm, positionalEmbedding, transformerBlock } from '../graph/nn.ts';
import { Rng } from '../tensor/rng.ts';
import { tensor } from '../tensor/tensor.ts';
import type { Model } from './model-file.ts';
import { predict } from './predict.ts';

/** Options of `transformerLanguageModel`. */
export interface LanguageModelOptions {
  /** Tokens (characters) the model reads and predicts. */
  vocab: number;
  /** The context: tokens per sequence. */
  length: number;
  /** The model's width. */
  dim: number;
  /** Attention heads per block; must divide `dim`. */
  heads: number;
  /** Transformer blocks. */
  layers: number;
  /** Width of each block's MLP (default 4 x dim). */
  hidden?: number;
  /** Dropout on the embeddings, the attention weights and each residual branch (default 0). */
  dropout?: number;
}

/**
 * A decoder-only transformer language model (GPT-2's layout): tokens x [B, length] (integer values
 * in [0, vocab)) are embedded with learned positions, go through `layers` pre-norm blocks with
 * causal attention and a final layerNorm, and a linear head gives the output `logits`
 * `[B, length, vocab]`, at position t the scores of the token at t + 1. The output `loss` is the
 * softmax cross-entropy against the next tokens y [B, length] (y[t] = x[t + 1] of the text),
 * averaged over every position of every sequence, in nats per token.
 *
 * Its nodes come in the order of the layers, the embeddings first and the head last, so the
 * runtime's 'stages' placement, which cuts that order into runs of about equal FLOPs, makes a
 * pipeline of consecutive layers: with as many blocks as stages, a block or so per stage; with 2
 * blocks on 4 stages, about half a block each (the attention, then the MLP), cut between nodes.
 * Token embeddings start as GPT-2's, normal(0, 0.02) (Note [token embedding scale]).
 */
export function transformerLanguageModel(options: LanguageModelOptions): Graph {
  const { vocab, length, dim, heads, layers, dropout = 0 } = options;
  for (const [name, value] of Object.entries({ vocab, length, dim, heads, layers })) {
    if (!Number.isInteger(value) || value < 1)
      throw new InputError(`transformerLanguageModel: ${name} must be an integer >= 1, found ${value}`, {
        option: name,
        expected: 'an integer >= 1',
        found: value,
      });
  }
  if (!(dropout >= 0 && dropout < 1))
    throw new InputError(`transformerLanguageModel: dropout must be in [0, 1), found ${dropout}`, {
      option: 'dropout',
      expected: 'a rate in [0, 1)',
      found: dropout,
    });
  const b = new GraphBuilder();
  const x = b.input('x', ['B', length]);
  const y = b.input('y', ['B', length]);
  let h = positionalEmbedding(
    b,
    embedding(b, x, vocab, dim, { name: 'tokens', init: { kind: 'normal', mean: 0, std: 0.02 } }),
    { name: 'positions' },
  );
  if (dropout > 0) h = b.dropout(h, dropout);
  for (let i = 0; i < layers; i++)
    h = transformerBlock(b, h, {
      name: `block${i}`,
      heads,
      causal: true,
      dropout,
      ...(options.hidden !== undefined ? { hidden: options.hidden } : {}),
    });
  const logits = b.output('logits', dense(b, layerNorm(b, h, { name: 'norm' }), vocab, { name: 'head' }));
  // softmaxCrossEntropy takes class indices of the logits' leading shape: [B, length] for [B, length, vocab].
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  return b.build();
}

// Note [token embedding scale]
// The token table starts at normal(0, 0.02), as GPT-2's, not at `embedding`'s default normal(0, 1):
// the learned positions start at 0.02 too, and at unit scale the token vectors would drown them in
// the first layer norm, leaving the attention blind to order until the positions grow. Measured with
// examples/gpt.ts's model and text at batch 16: 300 steps reached the validation loss (2.26
// nats/char) that 500 steps reached with normal(0, 1).

/** Options of `sampleTokens`. */
export interface SampleOptions {
  /** Tokens to generate after the prompt. */
  count: number;
  /** Divides the logits before the softmax (default 1); 0 takes the likeliest token every time. */
  temperature?: number;
  /** Seeds the draws (default 0): the same seed, model and prompt give the same tokens. */
  seed?: number;
  /** The input the tokens are fed to, [B, length] (default 'x'). */
  x?: string;
  /** The output of next-token scores, [B, length, vocab] (default 'logits'). */
  logits?: string;
}

// Note [sampling with a fixed context]
// The model reads exactly `length` tokens. Generation feeds the last `length` tokens so far (all of
// them while there are fewer), from position 0, and reads the scores at the position of the last
// one. While there are fewer than `length`, the positions after it are filled with token 0: causal
// attention keeps position t from seeing any later position, so the filler changes nothing at t (a
// test holds this bit for bit). Past `length` tokens the window slides, as GPT-2's does: each token
// is then predicted from the `length` before it.

/**
 * Generates `count` tokens after `prompt` with a language model (`transformerLanguageModel`, or any
 * graph mapping tokens x [B, length] to next-token logits [B, length, vocab]), one at a time, each
 * drawn from softmax(logits / temperature) at the position of the last token (Note [sampling with a
 * fixed context]). Runs the forward in this thread, in evaluation mode (`predict`). Returns the
 * generated tokens, without the prompt.
 */
export function sampleTokens(model: Model, prompt: readonly number[], options: SampleOptions): number[] {
  const { count, temperature = 1, seed = 0, x = 'x', logits = 'logits' } = options;
  const shape = model.graph.node(x).shape;
  const length = shape[1];
  if (shape.length !== 2 || typeof length !== 'number')
    throw new InputError(
      `sampleTokens: input '${x}' has shape [${shape.join(',')}], expected [batch, length] with a numeric length`,
      { node: x, expected: '[batch, length]', found: shape },
    );
  if (prompt.length === 0)
    throw new InputError('sampleTokens: expected a prompt of at least one token, found none', {
      expected: 'a non-empty prompt',
      found: prompt,
    });
  if (!Number.isSafeInteger(count) || count < 0)
    throw new InputError(`sampleTokens: count must be an integer >= 0, found ${count}`, {
      expected: 'an integer >= 0',
      found: count,
    });
  if (!(temperature >= 0 && Number.isFinite(temperature)))
    throw new InputError(`sampleTokens: temperature must be a finite number >= 0, found ${temperature}`, {
      expected: 'a finite number >= 0',
      found: temperature,
    });
  const rng = new Rng(seed);
  const dtype = model.graph.node(x).dtype;
  const tokens = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const window = tokens.slice(-length);
    const feed = [...window, ...new Array<number>(length - window.length).fill(0)];
    const scores = predict(model, { [x]: tensor([feed], { dtype }) }, { outputs: [logits] })[logits]!;
    const vocab = scores.shape[scores.rank - 1]!;
    const row = scores.data.subarray((window.length - 1) * vocab, window.length * vocab);
    const next = draw(row, temperature, rng);
    tokens.push(next);
    out.push(next);
  }
  return out;
}

/** A token drawn from softmax(scores / temperature); the first largest score when temperature is 0. */
function draw(scores: ArrayLike<number>, temperature: number, rng: Rng): number {
  let best = 0;
  for (let k = 1; k < scores.length; k++) if (scores[k]! > scores[best]!) best = k;
  if (temperature === 0) return best;
  const weights = Array.from(scores, (s) => Math.exp((s - scores[best]!) / temperature));
  let u = rng.uniform() * weights.reduce((a, w) => a + w, 0);
  for (let k = 0; k < weights.length; k++) {
    u -= weights[k]!;
    if (u < 0) return k;
  }
  return best;
}
