import { kernels } from '../tensor/kernels.ts';
import { normalizeAxes } from '../tensor/shape.ts';
import { withShape } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { checkAxes, numel, reducedShape } from './rules.ts';

export interface ReduceAttrs {
  readonly axes: readonly number[];
  readonly keepdims: boolean;
  readonly [key: string]: unknown;
}

// Shared by sum, mean and max: the shape rule and the forward's reduction.
export function reduceOp(
  name: string,
  kind: 'sum' | 'max',
): Pick<OpDef<ReduceAttrs>, 'arity' | 'attrs' | 'infer' | 'forward' | 'flops'> {
  return {
    arity: 1,
    attrs: { axes: 'integers', keepdims: 'boolean' },
    infer: ([x], { axes, keepdims }) => {
      checkAxes(name, axes, x!.shape.length);
      return { shape: reducedShape(x!.shape, axes, keepdims), dtype: x!.dtype };
    },
    forward: ([x], { axes, keepdims }) => {
      const norm = normalizeAxes(axes, x!.shape.length, name);
      const out = kernels().reduce(kind, x!, norm);
      return keepdims ? out : withShape(out, reducedShape(x!.shape, norm, false) as number[]);
    },
    flops: ([x]) => numel(x!.shape),
  };
}
