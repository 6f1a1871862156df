import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';
import { type AxisAttrs, axisRule } from './softmax.ts';

// dx = g - exp(y) * sum(g, axis), with exp(y) the softmax.
export const logSoftmax: OpDef<AxisAttrs> = {
  name: 'logSoftmax',
  arity: 1,
  attrs: { axis: 'axis' },
  saves: { inputs: 'none', output: true },
  infer: axisRule('logSoftmax'),
  forward: ([x], { axis }) => kernels().logSoftmax(x!, axis),
  vjp: (o, { g, output, attrs: { axis } }) => [o.sub(g, o.mul(o.exp(output()), o.sum(g, axis, true)))],
  flops: (_, out) => numel(out.shape) * 12,
};
