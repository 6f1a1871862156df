import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { checkAxis, numel, sameDType } from './rules.ts';

export interface GatherAttrs {
  readonly axis: number;
  readonly [key: string]: unknown;
}

/** Embedding lookup. Its gradient scatters the cotangent rows back and adds the duplicates. */
export const gather: OpDef<GatherAttrs> = {
  name: 'gather',
  arity: 2,
  attrs: { axis: 'axis' },
  nondiff: [1],
  saves: { inputs: [1], output: false },
  infer: (inputs, { axis }) => {
    const [table, indices] = [inputs[0]!, inputs[1]!];
    sameDType('gather', inputs);
    checkAxis('gather', axis, table.shape.length);
    return {
      shape: [...table.shape.slice(0, axis), ...indices.shape, ...table.shape.slice(axis + 1)],
      dtype: table.dtype,
    };
  },
  forward: ([table, indices], { axis }) => kernels().gather(table!, indices!, axis),
  vjp: (o, { g, input, inputShapes, attrs: { axis } }) => [
    o.scatterAdd(g, input(1), inputShapes[0]!, axis),
    null,
  ],
  flops: (_, out) => numel(out.shape),
};
