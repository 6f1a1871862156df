import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface PadAttrs {
  readonly before: readonly number[];
  readonly after: readonly number[];
  readonly [key: string]: unknown;
}

// Zero padding; its adjoint is the slice that cuts the padding away.
export const pad: OpDef<PadAttrs> = {
  name: 'pad',
  arity: 1,
  attrs: { before: 'integers', after: 'integers' },
  saves: { inputs: 'none', output: false },
  infer: ([x], { before, after }) => {
    const rank = x!.shape.length;
    const ok = (p: readonly number[]) => p.length === rank && p.every((v) => Number.isInteger(v) && v >= 0);
    if (!ok(before) || !ok(after)) {
      throw new ShapeError(
        `pad: expected ${rank} non-negative integers before and after for ${fmtShape(x!.shape)}`,
        {
          op: 'pad',
          found: { before, after },
        },
      );
    }
    const shape = x!.shape.map((d, i) => {
      if (typeof d === 'number') return d + before[i]! + after[i]!;
      if (before[i] !== 0 || after[i] !== 0)
        throw new ShapeError(`pad: cannot pad symbolic axis ${i} of ${fmtShape(x!.shape)}`, { op: 'pad' });
      return d;
    });
    return { shape, dtype: x!.dtype };
  },
  forward: ([x], { before, after }) => kernels().pad(x!, before, after),
  vjp: (o, { g, inputShapes, attrs: { before } }) => [o.slice(g, before, inputShapes[0]!)],
  flops: (_, out) => numel(out.shape),
};
