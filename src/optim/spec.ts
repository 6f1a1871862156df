import { fmtFound, InputError } from '../errors.ts';
// The kernels every thread uses by default (sumOfSquares runs on them), as the ops do.
import '../tensor/default-kernels.ts';
import { kernels } from '../tensor/kernels.ts';
import { allocateUninit, Tensor } from '../tensor/tensor.ts';
import { checkOption, type OptionRule, RULES } from '../util/option-rules.ts';
import { adam, adamw } from './adam.ts';
import type { Optimizer } from './optimizer.ts';
import { sgd } from './sgd.ts';

/** An optimizer as plain data, so it can be sent to the workers that own the parameters. */
export interface OptimizerSpec {
  /**
   * Which optimizer; the other keys are its options (as `sgd`, `adam` and `adamw` take them), each
   * checked.
   */
  readonly name: 'sgd' | 'adam' | 'adamw';
  /** The base learning rate (default: the optimizer's own). */
  readonly lr?: number;
  readonly [option: string]: number | boolean | string | undefined;
}

export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;

/** Every option each optimizer takes, with PyTorch's bounds: a spec with anything else is refused. */
const OPTIONS: Readonly<Record<OptimizerSpec['name'], Readonly<Record<string, OptionRule>>>> = {
  sgd: {
    lr: RULES.rate,
    momentum: RULES.rate,
    dampening: RULES.fraction,
    nesterov: RULES.flag,
    weightDecay: RULES.rate,
  },
  adam: { lr: RULES.rate, beta1: RULES.beta, beta2: RULES.beta, eps: RULES.rate, weightDecay: RULES.rate },
  adamw: { lr: RULES.rate, beta1: RULES.beta, beta2: RULES.beta, eps: RULES.rate, weightDecay: RULES.rate },
};

/**
 * Checks an optimizer spec before anything runs it: a known name, known options, each a number in
 * its range. A NaN or negative rate would otherwise only show as parameters gone bad, or as updates
 * the workers refuse. `where` names the caller in the message.
 */
export function checkOptimizerSpec(spec: unknown, where = 'optimizer'): asserts spec is OptimizerSpec {
  const name = (spec as { name?: unknown } | null)?.name;
  if (typeof name !== 'string' || !Object.hasOwn(OPTIONS, name)) {
    throw new InputError(
      `${where}: unknown optimizer ${fmtFound(name)} (expected one of ${OPTIMIZERS.join(', ')})`,
      {
        option: 'name',
        expected: OPTIMIZERS,
        found: name,
      },
    );
  }
  const rules = OPTIONS[name as OptimizerSpec['name']];
  for (const [option, value] of Object.entries(spec as object)) {
    if (option === 'name' || value === undefined) continue;
    const rule = rules[option];
    if (rule === undefined) {
      throw new InputError(
        `${where}: ${name} has no option '${option}' (expected ${Object.keys(rules).join(', ')})`,
        { op: name, option, expected: Object.keys(rules), found: option },
      );
    }
    checkOption(value, rule, `${where}: ${name} ${option}`, { op: name, option });
  }
  const { momentum = 0, dampening = 0, nesterov = false } = spec as Record<string, unknown>;
  if (nesterov === true && (momentum === 0 || dampening !== 0)) {
    throw new InputError(
      `${where}: sgd nesterov: expected a momentum > 0 and no dampening, found momentum ${momentum}, dampening ${dampening}`,
      {
        op: name,
        option: 'nesterov',
        expected: 'momentum > 0 and dampening 0',
        found: { momentum, dampening },
      },
    );
  }
}

/** A learning rate an update can use (a finite number >= 0), or an InputError naming where it came from. */
export function checkLr(lr: unknown, where: string): number {
  return checkOption(lr, RULES.rate, `${where}: lr`, { option: 'lr' }) as number;
}

/**
 * Bytes of the optimizer's state per parameter element (for Note [memory budget]): the state it makes
 * for a one-element parameter, measured (8 for SGD with momentum, 16 for Adam, 0 for plain SGD).
 */
export function optimizerStateBytes(spec: OptimizerSpec): number {
  const state = makeOptimizer(spec).init(new Tensor('float32', [1], new Float32Array(1)));
  return Object.values(state as object).reduce<number>(
    (n, v) => n + (ArrayBuffer.isView(v) ? v.byteLength : 0),
    0,
  );
}

/** The optimizer a spec describes (checked first). */
export function makeOptimizer(spec: OptimizerSpec): Optimizer {
  checkOptimizerSpec(spec);
  const { name, ...options } = spec;
  switch (name) {
    case 'sgd':
      return sgd(options) as Optimizer;
    case 'adam':
      return adam(options) as Optimizer;
    case 'adamw':
      return adamw(options) as Optimizer;
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
