import { unaryOp } from './rules.ts';

/** x ** exponent for a constant exponent. */
export const pow = unaryOp<{ exponent: number }>({
  name: 'pow',
  kind: 'pow',
  attrs: { exponent: 'finite' },
  param: (attrs) => attrs.exponent,
  saves: { inputs: [0], output: false },
  // x^0 is constant: its gradient is 0 everywhere, also at x = 0 where 0 * x^-1 would be NaN (as PyTorch).
  vjp: (o, { g, input, attrs: { exponent } }) => [
    exponent === 0 ? o.mul(g, 0) : o.mul(g, o.mul(o.pow(input(0), exponent - 1), exponent)),
  ],
  flopsPerElement: 10,
});
