import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { allocate, Tensor } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel, sameDType } from './rules.ts';

/** Mean squared error over all elements of two tensors of the same shape. */
export const mse: OpDef = {
  name: 'mse',
  arity: 2,
  saves: { inputs: 'all', output: false },
  attrs: {},
  infer: (inputs) => {
    const dtype = sameDType('mse', inputs);
    if (!shapesEqual(inputs[0]!.shape, inputs[1]!.shape)) {
      throw new ShapeError(
        `mse: prediction ${fmtShape(inputs[0]!.shape)} and target ${fmtShape(inputs[1]!.shape)} differ (expected equal shapes)`,
        { op: 'mse', input: 1, expected: inputs[0]!.shape, found: inputs[1]!.shape },
      );
    }
    return { shape: [], dtype };
  },
  forward: ([a, b]) => {
    const d = kernels().binary('sub', a!, b!).data;
    let total = 0;
    for (let i = 0; i < d.length; i++) total += d[i]! * d[i]!;
    const out = allocate(a!.dtype, 1);
    out[0] = total / d.length;
    return new Tensor(a!.dtype, [], out);
  },
  vjp: (o, { g, input, needs, inputShapes, dtype }) => {
    const shape = inputShapes[0]!;
    const scale = o.div(o.mul(g, 2), o.count(shape, [...shape.keys()], dtype));
    const s = o.mul(o.sub(input(0), input(1)), scale);
    return [needs[0] ? s : null, needs[1] ? o.neg(s) : null];
  },
  flops: ([a]) => numel(a!.shape) * 3,
};
