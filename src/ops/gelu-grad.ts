import { INV_SQRT_2PI } from '../tensor/special.ts';
import { unaryOp } from './rules.ts';

/**
 * GELU's derivative Phi(x) + x phi(x), one kernel pass (Note [fused GELU] in gelu.ts). Its own
 * derivative is phi(x) (2 - x^2), built from primitives.
 */
export const geluGrad = unaryOp({
  name: 'geluGrad',
  kind: 'geluGrad',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => {
    const x = input(0);
    const pdf = o.mul(o.exp(o.mul(o.square(x), -0.5)), INV_SQRT_2PI);
    return [o.mul(g, o.mul(pdf, o.sub(2, o.square(x))))];
  },
  flopsPerElement: 70,
});
