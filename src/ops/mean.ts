import { kernels } from '../tensor/kernels.ts';
import { normalizeAxes } from '../tensor/shape.ts';
import { scalar, withShape } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { type ReduceAttrs, reduceOp } from './reduce.ts';
import { reducedShape } from './rules.ts';

export const mean: OpDef<ReduceAttrs> = {
  name: 'mean',
  ...reduceOp('mean', 'sum'),
  forward: ([x], { axes, keepdims }) => {
    const norm = normalizeAxes(axes, x!.shape.length, 'mean');
    const k = kernels();
    const count = norm.reduce((p, a) => p * x!.shape[a]!, 1);
    const out = k.binary('div', k.reduce('sum', x!, norm), scalar(count, x!.dtype));
    return keepdims ? out : withShape(out, reducedShape(x!.shape, norm, false) as number[]);
  },
  saves: { inputs: 'none', output: false },
  vjp: (o, { g, inputShapes, attrs: { axes }, dtype }) => {
    const shape = inputShapes[0]!;
    const spread = o.broadcastTo(o.reshape(g, reducedShape(shape, axes, true)), shape);
    return [o.div(spread, o.count(shape, axes, dtype))];
  },
};
