import { ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface TransposeAttrs {
  readonly perm: readonly number[];
  readonly [key: string]: unknown;
}

function inverse(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return inv;
}

export const transpose: OpDef<TransposeAttrs> = {
  name: 'transpose',
  arity: 1,
  attrs: { perm: 'integers' },
  saves: { inputs: 'none', output: false },
  infer: ([x], { perm }) => {
    const rank = x!.shape.length;
    const sorted = [...perm].sort((a, b) => a - b);
    if (perm.length !== rank || sorted.some((p, i) => p !== i)) {
      throw new ShapeError(`transpose: perm ${JSON.stringify(perm)} is not a permutation of 0..${rank - 1}`, {
        op: 'transpose',
        expected: `a permutation of ${rank} axes`,
        found: perm,
      });
    }
    return { shape: perm.map((p) => x!.shape[p]!), dtype: x!.dtype };
  },
  forward: ([x], { perm }) => kernels().transpose(x!, perm),
  vjp: (o, { g, attrs }) => [o.transpose(g, inverse(attrs.perm))],
  flops: (_, out) => numel(out.shape),
};
