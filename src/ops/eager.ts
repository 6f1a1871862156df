import { fmtShape, ShapeError } from '../errors.ts';
import { type Shape, shapesEqual } from '../tensor/shape.ts';
import { type DType, scalar, type Tensor } from '../tensor/tensor.ts';
import { checkArity } from './arity.ts';
import { inferType } from './attrs.ts';
import { type Attrs, EVAL_RUN, NO_ATTRS } from './op.ts';
import { Ops } from './ops.ts';
import { getOp } from './registry.ts';
import './builtins.ts';

/**
 * Ops on tensors, computed at once: the eager side of the ops interface. `eager.add(a, b)` runs the
 * registered op's shape rule (for its errors) and forward, outside any step (evaluation mode: a
 * `stepKey` says so, and dropout with it is the identity).
 */
export class EagerOps extends Ops<Tensor> {
  apply(op: string, inputs: readonly Tensor[], attrs: Attrs = NO_ATTRS): Tensor {
    const def = getOp(op);
    checkArity(def, inputs.length);
    const info = inferType(def, inputs, attrs);
    const out = def.forward(inputs, attrs, EVAL_RUN);
    if (out.dtype !== info.dtype || !shapesEqual(out.shape, info.shape)) {
      throw new ShapeError(
        `${op}: forward returned ${out.dtype}${fmtShape(out.shape)}, its shape rule says ${info.dtype}${fmtShape(info.shape)}`,
        { op, expected: info.shape, found: out.shape },
      );
    }
    return out;
  }
  shapeOf(x: Tensor): Shape {
    return x.shape;
  }
  dtypeOf(x: Tensor): DType {
    return x.dtype;
  }
  constant(value: number, dtype: DType): Tensor {
    return scalar(value, dtype);
  }
}

/** The eager ops, ready to use: `eager.matmul(x, w)`. */
export const eager = new EagerOps();
