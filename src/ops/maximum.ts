import { binaryOp } from './rules.ts';

// Where the operands tie, the gradient is split evenly between them (as PyTorch does).
export const maximum = binaryOp({
  name: 'maximum',
  kind: 'maximum',
  saves: { inputs: 'all', output: false },
  vjp: (o, { g, input, needs }) => {
    const a = input(0);
    const b = input(1);
    const half = o.mul(o.equal(a, b), 0.5);
    return [
      needs[0] ? o.mul(g, o.add(o.greater(a, b), half)) : null,
      needs[1] ? o.mul(g, o.add(o.greater(b, a), half)) : null,
    ];
  },
});
