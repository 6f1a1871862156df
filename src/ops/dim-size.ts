import { ShapeError } from '../errors.ts';
import type { Dim } from '../tensor/shape.ts';
import { type DType, scalar } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';

export interface DimSizeAttrs {
  readonly dims: readonly Dim[];
  readonly dtype: DType;
  readonly [key: string]: unknown;
}

/**
 * The product of some dimensions as a scalar. VJPs use it (through `Ops.count`) for the 1/N of a
 * mean when N is a symbolic dimension that is only known when the graph runs.
 */
export const dimSize: OpDef<DimSizeAttrs> = {
  name: 'dimSize',
  arity: 0,
  attrs: { dims: 'shape', dtype: 'dtype' },
  shapeAttrs: ['dims'],
  saves: { inputs: 'none', output: false },
  infer: (_, { dtype }) => ({ shape: [], dtype }),
  forward: (_, { dims, dtype }) => {
    let n = 1;
    for (const d of dims) {
      if (typeof d !== 'number')
        throw new ShapeError(`dimSize: dimension '${d}' was not bound`, { op: 'dimSize', found: d });
      n *= d;
    }
    return scalar(n, dtype);
  },
  flops: () => 0,
};
