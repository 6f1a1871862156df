import { unaryOp } from './rules.ts';

// Slope 1 where x > 0, alpha elsewhere: mask + (1 - mask) * alpha is exactly 1 or alpha.
export const leakyRelu = unaryOp<{ alpha: number }>({
  name: 'leakyRelu',
  kind: 'leakyRelu',
  attrs: { alpha: 'finite' },
  param: (attrs) => attrs.alpha,
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input, attrs }) => {
    const mask = o.greater(input(0), 0);
    return [o.mul(g, o.add(mask, o.mul(o.sub(1, mask), attrs.alpha)))];
  },
});
