import { kernels } from '../tensor/kernels.ts';
import type { OpDef } from './op.ts';
import type { Pool2dOptions } from './ops.ts';
import { numel } from './rules.ts';
import {
  expectShape,
  imageDims,
  POOL_ATTRS,
  type PoolAttrs,
  poolKernelWindow,
  poolWindow,
  windowOutput,
} from './window.ts';

export interface AvgPool2dGradAttrs extends PoolAttrs {
  /** The pooled image's height and width (several give the same output size). */
  readonly size: readonly number[];
}

// Average pooling divides every window's sum by its area KH*KW, padding counted as zeros (PyTorch's
// default, count_include_pad): the divisor is one constant, so the op is linear with a plain adjoint,
// avgPool2dGrad, whose own adjoint is avgPool2d again.

const poolOptions = (a: PoolAttrs): Pool2dOptions => ({ stride: a.stride, padding: a.padding });

/** The mean of each window of an NHWC image x [N, H, W, C]: [N, OH, OW, C]. */
export const avgPool2d: OpDef<PoolAttrs> = {
  name: 'avgPool2d',
  arity: 1,
  attrs: POOL_ATTRS,
  saves: { inputs: 'none', output: false },
  infer: ([x], a) => {
    const [n, h, w, c] = imageDims('avgPool2d', 0, x!);
    return {
      shape: [n, ...windowOutput('avgPool2d', [h, w], poolWindow('avgPool2d', a)), c],
      dtype: x!.dtype,
    };
  },
  forward: ([x], a) => kernels().avgPool2d(x!, poolKernelWindow(a)),
  vjp: (o, { g, inputShapes, attrs }) => {
    const size = [inputShapes[0]![1] as number, inputShapes[0]![2] as number];
    return [o.avgPool2dGrad(g, size, attrs.kernel, poolOptions(attrs))];
  },
  flops: (_, out, a) => numel(out.shape) * a.kernel[0]! * a.kernel[1]!,
};

/** g [N, OH, OW, C] spread back over each window, over its area, into an image of `size` [H, W]. */
export const avgPool2dGrad: OpDef<AvgPool2dGradAttrs> = {
  name: 'avgPool2dGrad',
  arity: 1,
  attrs: { ...POOL_ATTRS, size: 'pair' },
  saves: { inputs: 'none', output: false },
  infer: ([g], a) => {
    const [n, , , c] = imageDims('avgPool2dGrad', 0, g!);
    const [oh, ow] = windowOutput('avgPool2dGrad', a.size, poolWindow('avgPool2dGrad', a));
    expectShape(
      'avgPool2dGrad',
      0,
      g!.shape,
      [n, oh, ow, c],
      `the average pool of a ${a.size.join('x')} image`,
    );
    return { shape: [n, a.size[0]!, a.size[1]!, c], dtype: g!.dtype };
  },
  forward: ([g], a) => {
    const [n, , , c] = g!.shape as [number, number, number, number];
    return kernels().avgPool2dGrad(g!, poolKernelWindow(a), [n, a.size[0]!, a.size[1]!, c]);
  },
  vjp: (o, { g: h, attrs }) => [o.avgPool2d(h, attrs.kernel, poolOptions(attrs))],
  flops: (_, out, a) => numel(out.shape) * a.kernel[0]! * a.kernel[1]!,
};
