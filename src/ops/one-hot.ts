import { kernels } from '../tensor/kernels.ts';
import type { DType } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface OneHotAttrs {
  readonly depth: number;
  readonly dtype: DType;
  readonly [key: string]: unknown;
}

// No gradient flows to indices.
export const oneHot: OpDef<OneHotAttrs> = {
  name: 'oneHot',
  arity: 1,
  attrs: { depth: 'count', dtype: 'dtype' },
  nondiff: [0],
  saves: { inputs: 'none', output: false },
  infer: ([x], { depth, dtype }) => ({ shape: [...x!.shape, depth], dtype }),
  forward: ([x], { depth, dtype }) => kernels().oneHot(x!, depth, dtype),
  flops: (_, out) => numel(out.shape),
};
