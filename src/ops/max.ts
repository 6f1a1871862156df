import type { OpDef } from './op.ts';
import { type ReduceAttrs, reduceOp } from './reduce.ts';
import { reducedShape } from './rules.ts';

// The gradient goes to the elements equal to the maximum, split evenly between ties.
export const max: OpDef<ReduceAttrs> = {
  name: 'max',
  ...reduceOp('max', 'max'),
  saves: { inputs: [0], output: true },
  vjp: (o, { g, input, output, inputShapes, attrs: { axes } }) => {
    const keep = reducedShape(inputShapes[0]!, axes, true);
    const mask = o.equal(input(0), o.reshape(output(), keep));
    const ties = o.sum(mask, axes, true);
    return [o.mul(o.div(mask, ties), o.reshape(g, keep))];
  },
};
