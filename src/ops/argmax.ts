import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { checkAxis, numel } from './rules.ts';

export interface ArgmaxAttrs {
  readonly axis: number;
  readonly [key: string]: unknown;
}

/**
 * The index of the maximum along `axis` (the first among ties; the first NaN if any), as a number
 * in x's dtype (like the class indices softmaxCrossEntropy and gather take), the axis removed.
 * Piecewise constant: no gradient flows through it.
 */
export const argmax: OpDef<ArgmaxAttrs> = {
  name: 'argmax',
  arity: 1,
  attrs: { axis: 'axis' },
  nondiff: [0],
  saves: { inputs: 'none', output: false },
  infer: ([x], { axis }) => {
    checkAxis('argmax', axis, x!.shape.length);
    if (x!.shape[axis] === 0) {
      throw new ShapeError(`argmax: axis ${axis} of ${fmtShape(x!.shape)} is empty`, {
        op: 'argmax',
        expected: 'a non-empty axis',
        found: x!.shape,
      });
    }
    return { shape: x!.shape.filter((_, i) => i !== axis), dtype: x!.dtype };
  },
  forward: ([x], { axis }) => kernels().argmax(x!, axis),
  flops: ([x]) => numel(x!.shape),
};
