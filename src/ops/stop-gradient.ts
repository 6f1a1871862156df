import type { OpDef } from './op.ts';

/** The identity forward; nothing flows back (a constant as far as differentiation goes). */
export const stopGradient: OpDef = {
  name: 'stopGradient',
  arity: 1,
  nondiff: [0],
  saves: { inputs: 'none', output: false },
  attrs: {},
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => x!,
  flops: () => 0,
};
