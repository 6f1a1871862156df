// Fuzz steps for the ops over NHWC images: picked values of width h*w*c viewed as images
// ['B', h, w, c] of a few pixels, through the op with a random window (kernel, stride, padding,
// dilation, groups), flattened back to [B, m]. All need the 'images' feature.
import type { Node } from '../../src/graph/graph.ts';
import type { Conv2dOptions, Pool2dOptions } from '../../src/ops/ops.ts';
import { windowCount } from '../../src/tensor/window.ts';
import type { Ctx, Step } from './step.ts';

interface Size {
  h: number;
  w: number;
  c: number;
}

/** A picked value as an image ['B', h, w, c], of `size` or of a small random one. */
function image(c: Ctx, size?: Size): [Node, Size] {
  const s = size ?? { h: 1 + c.rng.int(4), w: 1 + c.rng.int(4), c: 1 + c.rng.int(2) };
  return [c.b.reshape(c.pickWidth(s.h * s.w * s.c), ['B', s.h, s.w, s.c]), s];
}

interface AxisWindow {
  k: number;
  s: number;
  p: number;
  d: number;
}

/** A window along an axis of `size` pixels that fits it; pools have no dilation and padding below the kernel. */
function axisWindow(c: Ctx, size: number, pool: boolean): AxisWindow {
  for (let tries = 0; tries < 10; tries++) {
    const w = {
      k: 1 + c.rng.int(3),
      s: 1 + c.rng.int(2),
      p: c.rng.int(2),
      d: !pool && c.rng.next() < 0.3 ? 2 : 1,
    };
    if ((!pool || w.p < w.k) && w.d * (w.k - 1) + 1 <= size + 2 * w.p) return w;
  }
  return { k: 1, s: 1, p: 0, d: 1 };
}

/** A window over an image of `size`: the kernel, the options, and the output's height and width. */
function window(c: Ctx, size: Size, pool: boolean) {
  const [y, x] = [axisWindow(c, size.h, pool), axisWindow(c, size.w, pool)];
  return {
    kernel: [y.k, x.k],
    options: { stride: [y.s, x.s], padding: [y.p, x.p], ...(pool ? {} : { dilation: [y.d, x.d] }) },
    out: [windowCount(size.h, y.k, y.s, y.p, y.d), windowCount(size.w, x.k, x.s, x.p, x.d)] as [
      number,
      number,
    ],
  };
}

/** A conv's window, groups (2 when the channels allow) and filter count. */
function convWindow(c: Ctx, size: Size) {
  const win = window(c, size, false);
  const groups = size.c % 2 === 0 && c.rng.next() < 0.4 ? 2 : 1;
  const filters = groups * (1 + c.rng.int(2));
  const options: Conv2dOptions = { ...win.options, groups };
  return { ...win, options, filters, filter: [...win.kernel, size.c / groups, filters] };
}

const flat = (c: Ctx, v: Node) => c.push(c.b.flatten(v));

const conv: Step[] = [
  {
    op: 'conv2d',
    needs: ['images'],
    build: (c) => {
      const [x, size] = image(c);
      const win = convWindow(c, size);
      flat(c, c.b.conv2d(x, c.param(win.filter), win.options));
    },
  },
  {
    op: 'conv2dInputGrad',
    needs: ['images'],
    build: (c) => {
      const size = { h: 1 + c.rng.int(4), w: 1 + c.rng.int(4), c: 1 + c.rng.int(2) };
      const win = convWindow(c, size);
      const [g] = image(c, { h: win.out[0], w: win.out[1], c: win.filters });
      flat(c, c.b.conv2dInputGrad(g, c.param(win.filter), [size.h, size.w], win.options));
    },
  },
  {
    op: 'conv2dWeightGrad',
    needs: ['images'],
    build: (c) => {
      // A filter computed over the batch (like a Gram matrix), then used as one.
      const [x, size] = image(c);
      const win = convWindow(c, size);
      const [g] = image(c, { h: win.out[0], w: win.out[1], c: win.filters });
      const filter = c.b.conv2dWeightGrad(x, g, win.kernel, win.options);
      flat(c, c.b.conv2d(image(c, size)[0], c.b.mul(filter, 0.25), win.options));
    },
  },
];

type PoolOf = (c: Ctx, x: Node, kernel: number[], options: Pool2dOptions) => Node;
const pool = (op: string, f: PoolOf): Step => ({
  op,
  needs: ['images'],
  build: (c) => {
    const [x, size] = image(c);
    const win = window(c, size, true);
    flat(c, f(c, x, win.kernel, win.options));
  },
});

/** An adjoint: x (for max pooling), and a cotangent shaped like the pool's output or input. */
const adjoint = (
  op: string,
  f: (c: Ctx, x: Node, g: Node, size: Size, win: ReturnType<typeof window>) => Node,
): Step => ({
  op,
  needs: ['images'],
  build: (c) => {
    const [x, size] = image(c);
    const win = window(c, size, true);
    const pooled = op === 'maxPool2dSelect' ? size : { h: win.out[0], w: win.out[1], c: size.c };
    flat(c, f(c, x, image(c, pooled)[0], size, win));
  },
});

export const IMAGE_STEPS: readonly Step[] = [
  ...conv,
  pool('maxPool2d', (c, x, k, o) => c.b.maxPool2d(x, k, o)),
  pool('avgPool2d', (c, x, k, o) => c.b.avgPool2d(x, k, o)),
  adjoint('maxPool2dGrad', (c, x, g, _, w) => c.b.maxPool2dGrad(x, g, w.kernel, w.options)),
  adjoint('maxPool2dSelect', (c, x, h, _, w) => c.b.maxPool2dSelect(x, h, w.kernel, w.options)),
  adjoint('avgPool2dGrad', (c, _, g, s, w) => c.b.avgPool2dGrad(g, [s.h, s.w], w.kernel, w.options)),
];
