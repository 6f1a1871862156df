import { OpError } from '../errors.ts';
import { unaryOp } from './rules.ts';

/** x ** exponent for a constant exponent. */
export const pow = unaryOp<{ exponent: number }>({
  name: 'pow',
  kind: 'pow',
  param: (attrs) => attrs.exponent,
  check: (attrs) => {
    if (typeof attrs.exponent !== 'number' || !Number.isFinite(attrs.exponent)) {
      throw new OpError(`pow: expected a finite number exponent, found ${String(attrs.exponent)}`, {
        op: 'pow',
        found: attrs.exponent,
      });
    }
  },
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input, attrs }) => [o.mul(g, o.mul(o.pow(input(0), attrs.exponent - 1), attrs.exponent))],
  flopsPerElement: 10,
});
