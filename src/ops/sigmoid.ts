import { unaryOp } from './rules.ts';

export const sigmoid = unaryOp({
  name: 'sigmoid',
  kind: 'sigmoid',
  saves: { inputs: 'none', output: true },
  vjp: (o, { g, output }) => {
    const y = output();
    return [o.mul(g, o.mul(y, o.sub(1, y)))];
  },
  flopsPerElement: 10,
});
