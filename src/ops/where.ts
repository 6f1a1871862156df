import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { tryBroadcastShapes } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { numel, sameDType } from './rules.ts';

/**
 * where(cond, a, b): a where cond is nonzero, else b, the three broadcast (NumPy's where, PyTorch's
 * masked_fill with b a scalar). cond may be of either dtype (a comparison's 0/1, a mask constant)
 * and takes no gradient; a's and b's gradients are the cotangent where each was chosen, zeros
 * elsewhere, each a where again. Unlike a product with the mask, the values not chosen never reach
 * the output: where(mask, scores, -1e9) keeps an infinity or a NaN out of the masked places.
 */
export const where: OpDef = {
  name: 'where',
  arity: 3,
  attrs: {},
  nondiff: [0],
  saves: { inputs: [0], output: false },
  infer: (inputs) => {
    const [cond, a, b] = [inputs[0]!, inputs[1]!, inputs[2]!];
    const dtype = sameDType('where', [a, b]);
    const ab = tryBroadcastShapes(a.shape, b.shape);
    const shape = ab === null ? null : tryBroadcastShapes(cond.shape, ab);
    if (shape === null) {
      throw new ShapeError(
        `where: the condition ${fmtShape(cond.shape)} and the values ${fmtShape(a.shape)} and ${fmtShape(b.shape)} do not broadcast`,
        { op: 'where', expected: 'shapes that broadcast', found: [cond.shape, a.shape, b.shape] },
      );
    }
    return { shape, dtype };
  },
  forward: ([cond, a, b]) => kernels().where(cond!, a!, b!),
  vjp: (o, { g, input, needs }) => [
    null,
    needs[1] ? o.where(input(0), g, 0) : null,
    needs[2] ? o.where(input(0), 0, g) : null,
  ],
  flops: (_, out) => numel(out.shape),
};
