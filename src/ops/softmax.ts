import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { checkAxis, numel } from './rules.ts';

export interface AxisAttrs {
  readonly axis: number;
  readonly [key: string]: unknown;
}

export function axisRule(name: string): OpDef<AxisAttrs>['infer'] {
  return ([x], { axis }) => {
    checkAxis(name, axis, x!.shape.length);
    return { shape: x!.shape, dtype: x!.dtype };
  };
}

// dx = y * (g - sum(g * y, axis)).
export const softmax: OpDef<AxisAttrs> = {
  name: 'softmax',
  arity: 1,
  attrs: { axis: 'axis' },
  saves: { inputs: 'none', output: true },
  infer: axisRule('softmax'),
  forward: ([x], { axis }) => kernels().softmax(x!, axis),
  vjp: (o, { g, output, attrs: { axis } }) => {
    const y = output();
    return [o.mul(y, o.sub(g, o.sum(o.mul(g, y), axis, true)))];
  },
  flops: (_, out) => numel(out.shape) * 12,
};
