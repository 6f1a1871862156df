import { unaryOp } from './rules.ts';

// The gradient at 0 is 0, as in PyTorch.
export const relu = unaryOp({
  name: 'relu',
  kind: 'relu',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.mul(g, o.greater(input(0), 0))],
});
