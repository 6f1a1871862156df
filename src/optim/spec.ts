import { InputError } from '../errors.ts';
// The kernels every thread uses by default (sumOfSquares runs on them), as the ops do.
import '../tensor/default-kernels.ts';
import { kernels } from '../tensor/kernels.ts';
import { allocateUninit, Tensor } from '../tensor/tensor.ts';
import { adam, adamw } from './adam.ts';
import type { Optimizer } from './optimizer.ts';
import { sgd } from './sgd.ts';

/** An optimizer as plain data, so it can be sent to the workers that own the parameters. */
export interface OptimizerSpec {
  readonly name: 'sgd' | 'adam' | 'adamw';
  readonly lr?: number;
  readonly [option: string]: number | boolean | string | undefined;
}

export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;

/** The optimizer a spec describes. */
export function makeOptimizer(spec: OptimizerSpec): Optimizer {
  const { name, ...options } = spec;
  switch (name) {
    case 'sgd':
      return sgd(options) as Optimizer;
    case 'adam':
      return adam(options) as Optimizer;
    case 'adamw':
      return adamw(options) as Optimizer;
    default:
      throw new InputError(`unknown optimizer '${String(name)}' (expected one of ${OPTIMIZERS.join(', ')})`, {
        expected: OPTIMIZERS,
        found: name,
      });
  }
}

/** The sum of squares of a tensor's elements, in float64, in the order of Note [global norm order]. */
export function sumOfSquares(t: Tensor): number {
  return kernels().sumSquares(t);
}

// Note [global norm order]
// The global gradient norm is sqrt of the sum, over parameter names sorted by code unit, of each
// parameter's own sum of squares (float64: four partial sums over the elements i = k mod 4, the tail
// in the first, added as (s0 + s1) + (s2 + s3)). Each parameter's sum is computed where
// the parameter lives; only the per-parameter sums travel. Every engine uses these two functions, so
// the norm, and so the clipping, is bitwise the same on one thread or many.

/** The global norm from per-parameter sums of squares (Note [global norm order]). */
export function globalNormOf(sums: Readonly<Record<string, number>>): number {
  let total = 0;
  for (const name of Object.keys(sums).sort()) total += sums[name]!;
  return Math.sqrt(total);
}

/** g * scale, a fresh tensor (the clipping step). */
export function scaled(g: Tensor, scale: number): Tensor {
  if (scale === 1) return g;
  // Uninit: the loop writes every element.
  const data = allocateUninit(g.dtype, g.size);
  for (let i = 0; i < data.length; i++) data[i] = g.data[i]! * scale;
  return new Tensor(g.dtype, g.shape, data);
}

/** The clip factor for a global norm: maxNorm / norm when above, else 1. */
export function clipScale(norm: number, maxNorm: number | undefined): number {
  return maxNorm !== undefined && Number.isFinite(norm) && norm > maxNorm ? maxNorm / norm : 1;
}
