import { binaryOp } from './rules.ts';

export const add = binaryOp({
  name: 'add',
  kind: 'add',
  saves: { inputs: 'none', output: false },
  vjp: (_o, { g, needs }) => [needs[0] ? g : null, needs[1] ? g : null],
});
