import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface SliceAttrs {
  readonly begin: readonly number[];
  /** Extent per axis; -1 means to the end of the axis. May name symbolic dimensions. */
  readonly size: readonly Dim[];
  readonly [key: string]: unknown;
}

/** The slice's extent per axis, -1 resolved. */
export function sliceExtent(shape: Shape, begin: readonly number[], size: readonly Dim[]): Dim[] {
  const fail = (why: string) =>
    new ShapeError(
      `slice: begin ${JSON.stringify(begin)} size ${fmtShape(size)} does not fit ${fmtShape(shape)}: ${why}`,
      {
        op: 'slice',
        expected: `a block inside ${fmtShape(shape)}`,
        found: { begin, size },
      },
    );
  if (begin.length !== shape.length || size.length !== shape.length)
    throw fail('expected one begin and size per axis');
  return shape.map((d, i) => {
    const b = begin[i]!;
    const s = size[i]!;
    if (!Number.isInteger(b) || b < 0) throw fail(`begin ${b} on axis ${i}`);
    if (s === -1) {
      if (typeof d !== 'number') {
        if (b !== 0) throw fail(`axis ${i} is symbolic`);
        return d;
      }
      if (b > d) throw fail(`axis ${i}`);
      return d - b;
    }
    if (typeof s === 'string' || typeof d === 'string') {
      if (s !== d || b !== 0) throw fail(`axis ${i} is symbolic`);
      return s;
    }
    if (!Number.isInteger(s) || s < 0 || b + s > d) throw fail(`axis ${i}`);
    return s;
  });
}

export const slice: OpDef<SliceAttrs> = {
  name: 'slice',
  arity: 1,
  attrs: { begin: 'integers', size: 'extent' },
  shapeAttrs: ['size'],
  saves: { inputs: 'none', output: false },
  infer: ([x], { begin, size }) => ({ shape: sliceExtent(x!.shape, begin, size), dtype: x!.dtype }),
  forward: ([x], { begin, size }) =>
    kernels().slice(x!, begin, sliceExtent(x!.shape, begin, size) as number[]),
  vjp: (o, { g, inputShapes, outputShape, attrs: { begin } }) => {
    const shape = inputShapes[0]!;
    const after = shape.map((d, i) =>
      d === outputShape[i] ? 0 : (d as number) - begin[i]! - (outputShape[i] as number),
    );
    return [o.pad(g, begin, after)];
  },
  flops: (_, out) => numel(out.shape),
};
