import type { Tensor } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';
import { checkOption, RULES } from '../util/option-rules.ts';
import { clipScale, globalNormOf, scaled, sumOfSquares } from './spec.ts';

/** The L2 norm of all gradients together, in the order of Note [global norm order]. */
export function globalNorm(grads: Readonly<Record<string, Tensor>>): number {
  const sums = dict<number>();
  for (const [name, g] of Object.entries(grads)) sums[name] = sumOfSquares(g);
  return globalNormOf(sums);
}

/** `clipGlobalNorm`'s result: the norm, whether and how much it scaled, and the gradients. */
export interface ClipResult {
  /** The global norm before clipping (NaN or Infinity when a gradient is not finite). */
  norm: number;
  /** The factor applied: maxNorm / norm when clipped, else 1. */
  scale: number;
  /** Whether the norm was over maxNorm, so the gradients were scaled. */
  clipped: boolean;
  /** New tensors when clipped; the same tensor objects otherwise. */
  grads: Record<string, Tensor>;
}

/**
 * Scales every gradient by maxNorm / norm when the global norm exceeds `maxNorm` (without PyTorch's
 * 1e-6 in the denominator, so the clipped norm is maxNorm up to rounding). A non-finite norm leaves
 * the gradients as they are: the step's non-finite policy (`nonFinite`: 'error' or 'skip') decides.
 */
export function clipGlobalNorm(grads: Readonly<Record<string, Tensor>>, maxNorm: number): ClipResult {
  checkMaxNorm(maxNorm, 'clipGlobalNorm: maxNorm');
  const norm = globalNorm(grads);
  if (!Number.isFinite(norm) || norm <= maxNorm)
    return { norm, scale: 1, clipped: false, grads: { ...grads } };
  const scale = clipScale(norm, maxNorm);
  const out = dict<Tensor>();
  for (const [name, g] of Object.entries(grads)) out[name] = scaled(g, scale);
  return { norm, scale, clipped: true, grads: out };
}

/** A norm to clip to: a finite number > 0 (a NaN or negative one would not clip, or flip the step). */
export function checkMaxNorm(maxNorm: unknown, where: string): number {
  return checkOption(maxNorm, RULES.positive, where) as number;
}
