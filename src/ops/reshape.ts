import { fmtShape, ShapeError } from '../errors.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { withShape } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';

export interface ReshapeAttrs {
  readonly shape: readonly Dim[];
  readonly [key: string]: unknown;
}

/**
 * Resolves a reshape target against an input shape: at most one -1 (inferred from the element
 * count); symbolic dimensions must pair up with the same symbols of the input.
 */
export function resolveReshape(from: Shape, to: Shape): Dim[] {
  const fail = (why: string) =>
    new ShapeError(`reshape: cannot reshape ${fmtShape(from)} to ${fmtShape(to)}: ${why}`, {
      op: 'reshape',
      expected: `a shape with as many elements as ${fmtShape(from)}`,
      found: to,
    });
  const symbols = (s: Shape) => s.filter((d): d is string => typeof d === 'string').sort();
  const fromSyms = symbols(from);
  const toSyms = symbols(to);
  if (fromSyms.join(',') !== toSyms.join(',')) throw fail('symbolic dimensions differ');
  const known = (s: Shape) => s.reduce<number>((p, d) => (typeof d === 'number' && d !== -1 ? p * d : p), 1);
  const total = known(from);
  const inferred = to.filter((d) => d === -1).length;
  if (inferred > 1) throw fail('more than one -1');
  for (const d of to)
    if (typeof d === 'number' && d !== -1 && (!Number.isInteger(d) || d < 0))
      throw fail(`bad dimension ${d}`);
  const rest = known(to);
  if (inferred === 1) {
    if (rest === 0 || total % rest !== 0) throw fail('the element count does not divide');
    return to.map((d) => (d === -1 ? total / rest : d));
  }
  if (rest !== total) throw fail(`${total} elements vs ${rest}`);
  return [...to];
}

export const reshape: OpDef<ReshapeAttrs> = {
  name: 'reshape',
  arity: 1,
  shapeAttrs: ['shape'],
  saves: { inputs: 'none', output: false },
  infer: ([x], { shape }) => ({ shape: resolveReshape(x!.shape, shape), dtype: x!.dtype }),
  // Storage is contiguous row-major: a reshape shares the input's buffer (both are read-only).
  forward: ([x], { shape }) => withShape(x!, resolveReshape(x!.shape, shape) as number[]),
  vjp: (o, { g, inputShapes }) => [o.reshape(g, inputShapes[0]!)],
  flops: () => 0,
};
