import { fmtShape, ShapeError } from '../errors.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { withShape } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';

export interface ReshapeAttrs {
  readonly shape: readonly Dim[];
  readonly [key: string]: unknown;
}

function symbolsOf(s: Shape): string {
  return s
    .filter((d): d is string => typeof d === 'string')
    .sort()
    .join(',');
}

function knownProduct(s: Shape): number {
  let p = 1;
  for (const d of s) if (typeof d === 'number' && d !== -1) p *= d;
  return p;
}

function reshapeError(from: Shape, to: Shape, why: string): ShapeError {
  return new ShapeError(`reshape: cannot reshape ${fmtShape(from)} to ${fmtShape(to)}: ${why}`, {
    op: 'reshape',
    expected: `a shape with as many elements as ${fmtShape(from)}`,
    found: to,
  });
}

/**
 * Resolves a reshape target against an input shape: at most one -1 (inferred from the element
 * count); symbolic dimensions must pair up with the same symbols of the input.
 */
export function resolveReshape(from: Shape, to: Shape): Dim[] {
  let symbolic = false;
  let inferred = 0;
  for (const d of to) {
    if (typeof d === 'string') symbolic = true;
    else if (d === -1) inferred++;
    else if (!Number.isInteger(d) || d < 0) throw reshapeError(from, to, `bad dimension ${d}`);
  }
  for (const d of from) if (typeof d === 'string') symbolic = true;
  if (symbolic && symbolsOf(from) !== symbolsOf(to))
    throw reshapeError(from, to, 'symbolic dimensions differ');
  if (inferred > 1) throw reshapeError(from, to, 'more than one -1');
  const total = knownProduct(from);
  const rest = knownProduct(to);
  if (inferred === 1) {
    if (rest === 0 || total % rest !== 0) throw reshapeError(from, to, 'the element count does not divide');
    return to.map((d) => (d === -1 ? total / rest : d));
  }
  if (rest !== total) throw reshapeError(from, to, `${total} elements vs ${rest}`);
  return [...to];
}

export const reshape: OpDef<ReshapeAttrs> = {
  name: 'reshape',
  arity: 1,
  attrs: { shape: 'extent' },
  shapeAttrs: ['shape'],
  saves: { inputs: 'none', output: false },
  infer: ([x], { shape }) => ({ shape: resolveReshape(x!.shape, shape), dtype: x!.dtype }),
  // Storage is contiguous row-major: a reshape shares the input's buffer (both are read-only).
  forward: ([x], { shape }) => withShape(x!, resolveReshape(x!.shape, shape) as number[]),
  vjp: (o, { g, inputShapes }) => [o.reshape(g, inputShapes[0]!)],
  flops: () => 0,
};
