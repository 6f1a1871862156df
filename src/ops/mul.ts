import { binaryOp } from './rules.ts';

export const mul = binaryOp({
  name: 'mul',
  kind: 'mul',
  saves: { inputs: 'all', output: false },
  vjp: (o, { g, input, needs }) => [
    needs[0] ? o.mul(g, input(1)) : null,
    needs[1] ? o.mul(g, input(0)) : null,
  ],
});
