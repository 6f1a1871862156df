// The transformer language model: next-token logits at every position and their cross-entropy
// against a hand computation, causality, its cut into pipeline stages, training as a 4-stage 1F1B
// pipeline on threads bitwise equal to the reference loop, sampling, and per-position accuracy.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { textWindows } from '../../src/data/text.ts';
import { InputError } from '../../src/errors.ts';
import { initParams } from '../../src/graph/params.ts';
import { clipGlobalNorm } from '../../src/optim/clip.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import { compile } from '../../src/partition/plan.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { evaluateClassifier } from '../../src/train/evaluate.ts';
import { sampleTokens, transformerLanguageModel } from '../../src/train/language-model.ts';
import { predict } from '../../src/train/predict.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';

const VOCAB = 11;
const LENGTH = 8;
const graph = transformerLanguageModel({ vocab: VOCAB, length: LENGTH, dim: 16, heads: 4, layers: 2 });
const params = initParams(graph, 5);
const tokens = (rows: number, seed: number) => {
  const rng = new Rng(seed);
  return tensor(
    Array.from({ length: rows * LENGTH }, () => rng.int(VOCAB)),
    { shape: [rows, LENGTH] },
  );
};

/** The logits at position t of row r, as numbers. */
const scoresAt = (logits: Tensor, r: number, t: number) =>
  Array.from(logits.data.subarray((r * LENGTH + t) * VOCAB, (r * LENGTH + t + 1) * VOCAB));

describe('transformerLanguageModel', () => {
  it('logits [B, length, vocab]; loss is the mean over every position of -log softmax at the next token', () => {
    expect(graph.node('logits').shape).toEqual(['B', LENGTH, VOCAB]);
    expect(graph.node('x').shape).toEqual(['B', LENGTH]);
    expect(graph.node('y').shape).toEqual(['B', LENGTH]);
    const x = tokens(3, 1);
    const y = tokens(3, 2);
    const out = evaluate(graph, { x, y }, params, ['logits', 'loss']);
    let total = 0;
    for (let r = 0; r < 3; r++)
      for (let t = 0; t < LENGTH; t++) {
        const z = scoresAt(out['logits']!, r, t);
        const top = Math.max(...z);
        const logSum = top + Math.log(z.reduce((s, v) => s + Math.exp(v - top), 0));
        total += logSum - z[y.data[r * LENGTH + t]!]!;
      }
    expect(out['loss']!.item()).toBeCloseTo(total / (3 * LENGTH), 5);
  });

  it('is causal: a token changed at position t leaves the logits before t bit for bit', () => {
    const x = tokens(2, 3);
    const changed = tensor(
      Array.from(x.data, (v, i) => (i % LENGTH === 5 ? (v + 1) % VOCAB : v)),
      { shape: [2, LENGTH] },
    );
    const a = predict({ graph, params }, { x }, { outputs: ['logits'] })['logits']!;
    const b = predict({ graph, params }, { x: changed }, { outputs: ['logits'] })['logits']!;
    for (let r = 0; r < 2; r++) {
      for (let t = 0; t < 5; t++) expect(scoresAt(b, r, t)).toEqual(scoresAt(a, r, t));
      expect(scoresAt(b, r, 5)).not.toEqual(scoresAt(a, r, 5));
    }
  });

  it('4 pipeline stages are runs of consecutive layers: embeddings on the first, the head on the last', () => {
    const plan = compile(graph, { workers: 4, placement: 'stages' });
    const stages = graph.params().map((p) => plan.stageOf[p.id]!);
    expect(stages).toEqual([...stages].sort((a, b) => a - b));
    expect(new Set(stages)).toEqual(new Set([0, 1, 2, 3]));
    expect(plan.stageOf[graph.node('tokens.table').id]).toBe(0);
    expect(plan.stageOf[graph.node('head.w').id]).toBe(3);
  });

  it('refuses sizes that are not integers >= 1 and a dropout outside [0, 1)', () => {
    const base = { vocab: 5, length: 4, dim: 8, heads: 2, layers: 1 };
    expect(() => transformerLanguageModel({ ...base, layers: 0 })).toThrow(/layers must be an integer >= 1/);
    expect(() => transformerLanguageModel({ ...base, dropout: 1 })).toThrow(InputError);
  });
});

describe('the language model as a 4-stage 1F1B pipeline on threads', () => {
  it('2 Adam steps with clipping: losses and parameters bitwise equal to the reference loop', async () => {
    const spec: OptimizerSpec = { name: 'adam', lr: 0.01 };
    const batches = [0, 1].map((s) => ({ x: tokens(8, 10 + s), y: tokens(8, 20 + s) }));
    const options = { microbatches: 4 };
    // The reference: referenceStep's gradients, clipped, the same optimizer in this thread.
    const reference = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, cast(v)]));
    const run = new OptimizerRun(makeOptimizer(spec));
    const losses = batches.map((feeds, s) => {
      const { loss, grads } = referenceStep(graph, feeds, reference, { ...options, step: s + 1 });
      run.apply(reference, clipGlobalNorm(grads, 1).grads);
      return loss;
    });
    const runtime = await createRuntime(graph, {
      workers: 4,
      schedule: '1f1b',
      ...options,
      params,
      optimizer: spec,
      clipNorm: 1,
    });
    try {
      expect(runtime.plan.stages).toBe(4);
      for (const [s, feeds] of batches.entries()) expect((await runtime.step(feeds)).loss).toBe(losses[s]);
      expectBitwiseAll(await runtime.getParams(), reference);
    } finally {
      await runtime.close();
    }
  });
});

describe('sampleTokens', () => {
  const model = { graph, params };
  /** The likeliest next token after `context` (at most LENGTH tokens), fed padded with `filler`. */
  const greedyNext = (context: number[], filler: number) => {
    const feed = [...context, ...new Array<number>(LENGTH - context.length).fill(filler)];
    const logits = predict(model, { x: tensor([feed]) }, { outputs: ['logits'] })['logits']!;
    const z = scoresAt(logits, 0, context.length - 1);
    return z.indexOf(Math.max(...z));
  };

  it('temperature 0 takes the likeliest token, the window sliding past the context; the filler changes nothing', () => {
    const prompt = [3, 1, 4];
    const generated = sampleTokens(model, prompt, { count: 10, temperature: 0 });
    const text = [...prompt];
    for (let i = 0; i < 10; i++) text.push(greedyNext(text.slice(-LENGTH), 7));
    expect(generated).toEqual(text.slice(prompt.length));
    // Note [sampling with a fixed context]: the positions after the last token do not count.
    const a = predict(model, { x: tensor([[3, 1, 4, 0, 0, 0, 0, 0]]) }, { outputs: ['logits'] })['logits']!;
    const b = predict(model, { x: tensor([[3, 1, 4, 9, 2, 6, 5, 3]]) }, { outputs: ['logits'] })['logits']!;
    expectBitwise(
      tensor(scoresAt(a, 0, 2), { dtype: 'float32' }),
      tensor(scoresAt(b, 0, 2), { dtype: 'float32' }),
    );
  });

  it('draws from the softmax with its seed: the same seed the same tokens, every token in the vocabulary', () => {
    const a = sampleTokens(model, [2], { count: 30, seed: 1 });
    expect(sampleTokens(model, [2], { count: 30, seed: 1 })).toEqual(a);
    expect(sampleTokens(model, [2], { count: 30, seed: 2 })).not.toEqual(a);
    expect(a.every((t) => Number.isInteger(t) && t >= 0 && t < VOCAB)).toBe(true);
    // A high temperature flattens the distribution: more distinct tokens than at a low one.
    const distinct = (temperature: number) =>
      new Set(sampleTokens(model, [2], { count: 40, seed: 3, temperature })).size;
    expect(distinct(100)).toBeGreaterThan(distinct(0.01));
  });

  it('refuses an empty prompt, a negative temperature and a fractional count', () => {
    expect(() => sampleTokens(model, [], { count: 1 })).toThrow(/a prompt of at least one token/);
    expect(() => sampleTokens(model, [1], { count: 1, temperature: -1 })).toThrow(InputError);
    expect(() => sampleTokens(model, [1], { count: 1.5 })).toThrow(InputError);
  });
});

describe('evaluateClassifier on next-token labels [N, length]', () => {
  it('the loss of the graph, and the accuracy over every position', () => {
    const text = Array.from({ length: 60 }, (_, i) => (i * 7) % VOCAB);
    const data = textWindows(text, { length: LENGTH, stride: 5 });
    const result = evaluateClassifier(graph, params, data, { chunk: 4 });
    const out = evaluate(graph, { x: data.x, y: data.y }, params, ['logits', 'loss']);
    expect(result.loss).toBeCloseTo(out['loss']!.item(), 5);
    let right = 0;
    for (let r = 0; r < data.size; r++)
      for (let t = 0; t < LENGTH; t++) {
        const z = scoresAt(out['logits']!, r, t);
        if (z.indexOf(Math.max(...z)) === data.y.data[r * LENGTH + t]) right++;
      }
    expect(result.accuracy).toBe(right / (data.size * LENGTH));
  });
});
