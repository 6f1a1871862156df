import type { OpDef } from './op.ts';
import { type ReduceAttrs, reduceOp } from './reduce.ts';
import { reducedShape } from './rules.ts';

export const sum: OpDef<ReduceAttrs> = {
  name: 'sum',
  ...reduceOp('sum', 'sum'),
  saves: { inputs: 'none', output: false },
  vjp: (o, { g, inputShapes, attrs: { axes } }) => {
    const shape = inputShapes[0]!;
    return [o.broadcastTo(o.reshape(g, reducedShape(shape, axes, true)), shape)];
  },
};
