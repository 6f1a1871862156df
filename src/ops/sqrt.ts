import { unaryOp } from './rules.ts';

// d sqrt(x) = 1 / (2 sqrt(x)): the output is all the backward needs.
export const sqrt = unaryOp({
  name: 'sqrt',
  kind: 'sqrt',
  saves: { inputs: 'none', output: true },
  vjp: (o, { g, output }) => [o.div(g, o.mul(output(), 2))],
});
