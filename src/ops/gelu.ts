import { kernels } from '../tensor/kernels.ts';
import { scalar } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * The exact GELU: x * Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2. Its derivative
 * Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi), is built from primitives, so it has
 * derivatives of its own (gradGraph of gradGraph).
 */
export const gelu: OpDef = {
  name: 'gelu',
  arity: 1,
  saves: { inputs: [0], output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => {
    const k = kernels();
    const c = (v: number) => scalar(v, x!.dtype);
    const cdf = k.binary(
      'mul',
      k.binary('add', k.unary('erf', k.binary('mul', x!, c(INV_SQRT2))), c(1)),
      c(0.5),
    );
    return k.binary('mul', x!, cdf);
  },
  vjp: (o, { g, input }) => {
    const x = input(0);
    const cdf = o.mul(o.add(o.erf(o.mul(x, INV_SQRT2)), 1), 0.5);
    const pdf = o.mul(o.exp(o.mul(o.square(x), -0.5)), INV_SQRT_2PI);
    return [o.mul(g, o.add(cdf, o.mul(x, pdf)))];
  },
  flops: (_, out) => numel(out.shape) * 50,
};
