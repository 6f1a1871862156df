import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { Dim } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { checkAxis, numel, sameDType } from './rules.ts';

export interface ConcatAttrs {
  readonly axis: number;
  readonly [key: string]: unknown;
}

export const concat: OpDef<ConcatAttrs> = {
  name: 'concat',
  arity: 'variadic',
  attrs: { axis: 'axis' },
  saves: { inputs: 'none', output: false },
  infer: (inputs, { axis }) => {
    const dtype = sameDType('concat', inputs);
    const first = inputs[0]!.shape;
    checkAxis('concat', axis, first.length);
    let total: Dim = 0;
    inputs.forEach((x, i) => {
      const ok = x.shape.length === first.length && x.shape.every((d, j) => j === axis || d === first[j]);
      const d = x.shape[axis];
      if (!ok || typeof d !== 'number') {
        throw new ShapeError(
          `concat: input ${i} has shape ${fmtShape(x.shape)}, expected ${fmtShape(first.map((d, j) => (j === axis ? '*' : d)))} with a numeric axis ${axis}`,
          { op: 'concat', input: i, expected: first, found: x.shape },
        );
      }
      total = (total as number) + d;
    });
    return { shape: first.map((d, j) => (j === axis ? total : d)), dtype };
  },
  forward: (xs, { axis }) => kernels().concat(xs, axis),
  vjp: (o, { g, inputShapes, needs, attrs: { axis } }) => {
    let offset = 0;
    return inputShapes.map((shape, i) => {
      const begin = shape.map((_, j) => (j === axis ? offset : 0));
      offset += shape[axis] as number;
      return needs[i] ? o.slice(g, begin, shape) : null;
    });
  },
  flops: (_, out) => numel(out.shape),
};
