import { unaryOp } from './rules.ts';

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

// d erf(x) = 2/sqrt(pi) exp(-x^2).
export const erf = unaryOp({
  name: 'erf',
  kind: 'erf',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.mul(g, o.mul(o.exp(o.neg(o.square(input(0)))), TWO_OVER_SQRT_PI))],
  flopsPerElement: 40,
});
