import { unaryOp } from './rules.ts';

export const neg = unaryOp({
  name: 'neg',
  kind: 'neg',
  saves: { inputs: 'none', output: false },
  vjp: (o, { g }) => [o.neg(g)],
});
