import { kernels } from '../tensor/kernels.ts';
import { normalizeAxes } from '../tensor/shape.ts';
import { withShape } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel, reducedShape } from './rules.ts';

export interface ReduceAttrs {
  readonly axes: readonly number[];
  readonly keepdims: boolean;
  readonly [key: string]: unknown;
}

// Shared by sum, mean and max: the shape rule and the forward's reduction.
export function reduceOp(
  name: string,
  kind: 'sum' | 'max',
): Pick<OpDef<ReduceAttrs>, 'arity' | 'infer' | 'forward' | 'flops'> {
  return {
    arity: 1,
    infer: ([x], { axes, keepdims }) => {
      const norm = normalizeAxes(axes, x!.shape.length, name);
      return { shape: reducedShape(x!.shape, norm, keepdims), dtype: x!.dtype };
    },
    forward: ([x], { axes, keepdims }) => {
      const norm = normalizeAxes(axes, x!.shape.length, name);
      const out = kernels().reduce(kind, x!, norm);
      return keepdims ? out : withShape(out, reducedShape(x!.shape, norm, false) as number[]);
    },
    flops: ([x]) => numel(x!.shape),
  };
}
