// Input domains for op tests: seeded float64 tensors where an op is smooth (positive for log, away
// from kinks for relu, distinct values for max, valid integer indices for gather ...).
import { Rng } from '../../src/tensor/rng.ts';
import { type DType, type Tensor, tensor } from '../../src/tensor/tensor.ts';

const rng = new Rng(2024);

/** A float64 tensor from nested numbers (tests compute in float64 unless they say otherwise). */
export const t64 = (values: number | readonly unknown[], dtype: DType = 'float64'): Tensor =>
  tensor(values as number[], { dtype });

const sized = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);
const fill = (shape: readonly number[], f: (i: number) => number): Tensor =>
  tensor(
    Array.from({ length: sized(shape) }, (_, i) => f(i)),
    { shape, dtype: 'float64' },
  );

/** Uniform in [low, high). */
export const uniform = (shape: readonly number[], low = -1.5, high = 1.5): Tensor =>
  fill(shape, () => rng.uniform(low, high));

/** Strictly positive, away from 0 (log, sqrt, fractional powers, divisors). */
export const positive = (shape: readonly number[]): Tensor => uniform(shape, 0.5, 2);

/** Either sign, |x| in [0.2, 1.5]: away from the kink at 0 (relu, abs, leakyRelu, sign). */
export const awayFromZero = (shape: readonly number[]): Tensor =>
  fill(shape, () => (rng.next() < 0.5 ? -1 : 1) * rng.uniform(0.2, 1.5));

/**
 * Values on a grid of step 0.2, shifted by `offset`: two tensors with offsets 0 and 0.1 never come
 * closer than 0.1 under any broadcast, so maximum/minimum are smooth there.
 */
export const grid = (shape: readonly number[], offset: number): Tensor =>
  fill(shape, () => 0.2 * (rng.int(15) - 7) + offset);

/** Distinct values 0.1 apart in shuffled order: every reduction has a unique maximum. */
export const distinct = (shape: readonly number[]): Tensor => {
  const values = rng.shuffle(Array.from({ length: sized(shape) }, (_, i) => 0.1 * i - 0.5));
  return fill(shape, (i) => values[i]!);
};

/** 0 or 1: a mask, as a comparison makes one. */
export const mask = (shape: readonly number[]): Tensor => fill(shape, () => rng.int(2));

/** Integer class indices in [0, n). */
export const indices = (shape: readonly number[], n: number): Tensor => fill(shape, () => rng.int(n));

/** Probability rows (positive, summing to 1) over the last axis. */
export const probabilities = (rows: number, classes: number): Tensor => {
  const raw = Array.from({ length: rows * classes }, () => rng.uniform(0.1, 1));
  return fill([rows, classes], (i) => {
    const r = Math.floor(i / classes) * classes;
    return raw[i]! / raw.slice(r, r + classes).reduce((a, b) => a + b, 0);
  });
};

/**
 * Where an input of an op is defined, finite and smooth. One table for the op tests, which draw
 * their inputs from it (`drawFor`), and for the fuzzer (test/fuzz), which maps random values into it.
 * 'indices' and 'labels' need a class count, so tests write those tensors out.
 */
export type Domain =
  | 'real'
  | 'positive'
  | 'awayFromZero'
  | 'separated'
  | 'distinct'
  | 'mask'
  | 'indices'
  | 'labels';

const DOMAINS: Readonly<Record<string, readonly Domain[]>> = {
  div: ['real', 'awayFromZero'],
  // Ties switch the gradient between the operands, and make comparisons flip.
  maximum: ['separated', 'separated'],
  minimum: ['separated', 'separated'],
  greater: ['separated', 'separated'],
  greaterEqual: ['separated', 'separated'],
  equal: ['separated', 'separated'],
  log: ['positive'],
  sqrt: ['positive'],
  // Kinks at 0.
  abs: ['awayFromZero'],
  sign: ['awayFromZero'],
  relu: ['awayFromZero'],
  leakyRelu: ['awayFromZero'],
  max: ['distinct'],
  argmax: ['distinct'],
  // A tie inside a window moves the maximum (and the adjoints' routing) to another pixel.
  maxPool2d: ['distinct'],
  maxPool2dGrad: ['distinct', 'real'],
  maxPool2dSelect: ['distinct', 'real'],
  where: ['mask', 'real', 'real'],
  gather: ['real', 'indices'],
  scatterAdd: ['real', 'indices'],
  oneHot: ['indices'],
  softmaxCrossEntropy: ['real', 'labels'],
  softmaxCrossEntropyGrad: ['real', 'labels', 'real'],
};

/** The domain of input `slot` of `op`; pow's depends on its exponent. Unlisted inputs are 'real'. */
export function domainOf(op: string, slot = 0, attrs: Readonly<Record<string, unknown>> = {}): Domain {
  if (op === 'pow') {
    const e = attrs['exponent'] as number;
    return !Number.isInteger(e) ? 'positive' : e < 0 ? 'awayFromZero' : 'real';
  }
  return DOMAINS[op]?.[slot] ?? 'real';
}

/** A float64 tensor from a domain; input `slot` of a 'separated' pair is offset by 0.1 per slot. */
export function draw(domain: Domain, shape: readonly number[], slot = 0): Tensor {
  switch (domain) {
    case 'real':
      return uniform(shape);
    case 'positive':
      return positive(shape);
    case 'awayFromZero':
      return awayFromZero(shape);
    case 'separated':
      return grid(shape, 0.1 * slot);
    case 'distinct':
      return distinct(shape);
    case 'mask':
      return mask(shape);
    default:
      throw new Error(`draw: '${domain}' tensors need a class count; write them out`);
  }
}

/** Draws input `slot` of `op` from its domain. */
export const drawFor =
  (op: string, attrs: Readonly<Record<string, unknown>> = {}) =>
  (shape: readonly number[], slot = 0): Tensor =>
    draw(domainOf(op, slot, attrs), shape, slot);
