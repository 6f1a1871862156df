// Shape rules shared by the ops over windows of NHWC images: conv2d and its two gradients, the
// pools and their adjoints. Layout: Note [conv2d layout] (conv2d.ts).
import { fmtShape, ShapeError } from '../errors.ts';
import { type Dim, type Shape, shapesEqual } from '../tensor/shape.ts';
import { type PoolWindow, type Window2d, windowCount } from '../tensor/window.ts';
import type { TypeInfo } from './op.ts';

export interface PoolAttrs {
  /** Window height and width. */
  readonly kernel: readonly number[];
  readonly stride: readonly number[];
  /** Zeros (max pooling: never picked) on both sides of height and width, each below the kernel. */
  readonly padding: readonly number[];
  readonly [key: string]: unknown;
}

export const POOL_ATTRS = { kernel: 'pair', stride: 'pair', padding: 'padding' } as const;

/** An NHWC image [N, H, W, C]: the batch N may be symbolic, H, W and C are numbers. */
export function imageDims(op: string, input: number, x: TypeInfo): [Dim, number, number, number] {
  const s = x.shape;
  if (s.length !== 4 || s.slice(1).some((d) => typeof d !== 'number')) {
    throw new ShapeError(
      `${op}: input ${input} has shape ${fmtShape(s)}, expected an NHWC image [N, H, W, C] with numeric H, W and C`,
      { op, input, expected: '[N, H, W, C]', found: s },
    );
  }
  return s as [Dim, number, number, number];
}

/** Output height and width of a window sliding over an image of `size` [H, W]: at least 1 each. */
export function windowOutput(op: string, size: readonly number[], win: Window2d): [number, number] {
  const [h, w] = size as [number, number];
  const oh = windowCount(h, win.kernel[0]!, win.stride[0]!, win.padding[0]!, win.dilation[0]);
  const ow = windowCount(w, win.kernel[1]!, win.stride[1]!, win.padding[1]!, win.dilation[1]);
  if (oh < 1 || ow < 1) {
    const reach = win.kernel.map((k, i) => win.dilation[i]! * (k - 1) + 1);
    throw new ShapeError(
      `${op}: a window reaching ${reach.join('x')} pixels does not fit a ${h}x${w} image padded by ${fmtShape(win.padding)}`,
      { op, expected: `an image of at least ${reach.join('x')} pixels with padding`, found: [h, w] },
    );
  }
  return [oh, ow];
}

/** A pool's window: padding below the kernel, so that every window holds a pixel of the image. */
export function poolWindow(op: string, { kernel, stride, padding }: PoolAttrs): Window2d {
  if (padding[0]! >= kernel[0]! || padding[1]! >= kernel[1]!) {
    throw new ShapeError(`${op}: padding ${fmtShape(padding)} must be below the kernel ${fmtShape(kernel)}`, {
      op,
      expected: `padding below ${fmtShape(kernel)}`,
      found: padding,
    });
  }
  return { kernel, stride, padding, dilation: [1, 1] };
}

/** The window of a pool, as its kernels take it. */
export const poolKernelWindow = ({ kernel, stride, padding }: PoolAttrs): PoolWindow => ({
  kernel,
  stride,
  padding,
});

/** Input `input` must have shape `expected` (a gradient against the value it belongs to). */
export function expectShape(op: string, input: number, found: Shape, expected: Shape, what: string): void {
  if (!shapesEqual(found, expected)) {
    throw new ShapeError(
      `${op}: input ${input} has shape ${fmtShape(found)}, expected ${fmtShape(expected)} (${what})`,
      { op, input, expected, found },
    );
  }
}
