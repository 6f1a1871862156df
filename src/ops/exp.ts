import { unaryOp } from './rules.ts';

export const exp = unaryOp({
  name: 'exp',
  kind: 'exp',
  saves: { inputs: 'none', output: true },
  vjp: (o, { g, output }) => [o.mul(g, output())],
  flopsPerElement: 10,
});
