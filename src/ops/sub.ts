import { binaryOp } from './rules.ts';

export const sub = binaryOp({
  name: 'sub',
  kind: 'sub',
  saves: { inputs: 'none', output: false },
  vjp: (o, { g, needs }) => [needs[0] ? g : null, needs[1] ? o.neg(g) : null],
});
