import { OpError } from '../errors.ts';
import { unaryOp } from './rules.ts';

// Slope 1 where x > 0, alpha elsewhere: mask + (1 - mask) * alpha is exactly 1 or alpha.
export const leakyRelu = unaryOp<{ alpha: number }>({
  name: 'leakyRelu',
  kind: 'leakyRelu',
  param: (attrs) => attrs.alpha,
  check: (attrs) => {
    if (typeof attrs.alpha !== 'number' || !Number.isFinite(attrs.alpha)) {
      throw new OpError(`leakyRelu: expected a finite number alpha, found ${String(attrs.alpha)}`, {
        op: 'leakyRelu',
      });
    }
  },
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input, attrs }) => {
    const mask = o.greater(input(0), 0);
    return [o.mul(g, o.add(mask, o.mul(o.sub(1, mask), attrs.alpha)))];
  },
});
