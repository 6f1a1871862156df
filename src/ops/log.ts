import { unaryOp } from './rules.ts';

export const log = unaryOp({
  name: 'log',
  kind: 'log',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.div(g, input(0))],
  flopsPerElement: 10,
});
