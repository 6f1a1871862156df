import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { type Dim, shapesEqual } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { checkAxis, numel, sameDType } from './rules.ts';

export interface ScatterAddAttrs {
  readonly shape: readonly Dim[];
  readonly axis: number;
  readonly [key: string]: unknown;
}

/** The adjoint of gather: its own gradient is a gather. */
export const scatterAdd: OpDef<ScatterAddAttrs> = {
  name: 'scatterAdd',
  arity: 2,
  attrs: { shape: 'shape', axis: 'axis' },
  nondiff: [1],
  shapeAttrs: ['shape'],
  saves: { inputs: [1], output: false },
  infer: (inputs, { shape, axis }) => {
    const [updates, indices] = [inputs[0]!, inputs[1]!];
    sameDType('scatterAdd', inputs);
    checkAxis('scatterAdd', axis, shape.length);
    const expected = [...shape.slice(0, axis), ...indices.shape, ...shape.slice(axis + 1)];
    if (!shapesEqual(updates.shape, expected)) {
      throw new ShapeError(
        `scatterAdd: updates have shape ${fmtShape(updates.shape)}, expected ${fmtShape(expected)}`,
        {
          op: 'scatterAdd',
          input: 0,
          expected,
          found: updates.shape,
        },
      );
    }
    return { shape: [...shape], dtype: updates.dtype };
  },
  forward: ([updates, indices], { shape, axis }) =>
    kernels().scatterAdd(updates!, indices!, shape as number[], axis),
  vjp: (o, { g, input, attrs: { axis } }) => [o.gather(g, input(1), axis), null],
  flops: ([u]) => numel(u!.shape),
};
