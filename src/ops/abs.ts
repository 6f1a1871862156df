import { unaryOp } from './rules.ts';

// The subgradient at 0 is sign(0) = 0, as in PyTorch.
export const abs = unaryOp({
  name: 'abs',
  kind: 'abs',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.mul(g, o.sign(input(0)))],
});
