import { binaryOp } from './rules.ts';

// d(a/b)/da = 1/b, d(a/b)/db = -a/b^2.
export const div = binaryOp({
  name: 'div',
  kind: 'div',
  saves: { inputs: 'all', output: false },
  vjp: (o, { g, input, needs }) => [
    needs[0] ? o.div(g, input(1)) : null,
    needs[1] ? o.neg(o.div(o.mul(g, input(0)), o.square(input(1)))) : null,
  ],
});
