import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { type Dim, shapesEqual, tryBroadcastShapes } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface BroadcastToAttrs {
  readonly shape: readonly Dim[];
  readonly [key: string]: unknown;
}

// The VJP passes the cotangent through: summing it back to the input's shape is the engine's job.
export const broadcastTo: OpDef<BroadcastToAttrs> = {
  name: 'broadcastTo',
  arity: 1,
  attrs: { shape: 'shape' },
  shapeAttrs: ['shape'],
  saves: { inputs: 'none', output: false },
  infer: ([x], { shape }) => {
    const out = tryBroadcastShapes(x!.shape, shape);
    if (out === null || !shapesEqual(out, shape)) {
      throw new ShapeError(`broadcastTo: ${fmtShape(x!.shape)} does not broadcast to ${fmtShape(shape)}`, {
        op: 'broadcastTo',
        expected: `a shape ${fmtShape(x!.shape)} broadcasts to`,
        found: shape,
      });
    }
    return { shape: [...shape], dtype: x!.dtype };
  },
  forward: ([x], { shape }) => kernels().broadcastTo(x!, shape as number[]),
  vjp: (_o, { g }) => [g],
  flops: (_, out) => numel(out.shape),
};
