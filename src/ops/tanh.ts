import { unaryOp } from './rules.ts';

export const tanh = unaryOp({
  name: 'tanh',
  kind: 'tanh',
  saves: { inputs: 'none', output: true },
  vjp: (o, { g, output }) => [o.mul(g, o.sub(1, o.square(output())))],
  flopsPerElement: 10,
});
