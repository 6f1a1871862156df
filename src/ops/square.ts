import { unaryOp } from './rules.ts';

export const square = unaryOp({
  name: 'square',
  kind: 'square',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.mul(g, o.mul(input(0), 2))],
});
