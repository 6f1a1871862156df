import { kernels } from '../tensor/kernels.ts';
import type { OpDef, TypeInfo } from './op.ts';
import type { Pool2dOptions } from './ops.ts';
import { numel, sameDType } from './rules.ts';
import {
  expectShape,
  imageDims,
  POOL_ATTRS,
  type PoolAttrs,
  poolKernelWindow,
  poolWindow,
  windowOutput,
} from './window.ts';

// Max pooling and its adjoints, as JAX has them (reduce_window max, select_and_scatter_add,
// select_and_gather_add): maxPool2dGrad(x, g) adds g at each window's maximum of x, and
// maxPool2dSelect(x, h) reads h there. Each is linear in its second input and the other's adjoint,
// so second derivatives close over the three; the maximum's position is flat almost everywhere in x,
// so no gradient flows to x through the adjoints. Ties go to the first maximum in window order
// (row by row), as in PyTorch, and a NaN wins (as in the max reduction).

const poolOptions = (a: PoolAttrs): Pool2dOptions => ({ stride: a.stride, padding: a.padding });

/** [N, OH, OW, C] of max pooling an image x [N, H, W, C] with the window of `a`. */
function pooledShape(op: string, x: TypeInfo, a: PoolAttrs) {
  const [n, h, w, c] = imageDims(op, 0, x);
  return [n, ...windowOutput(op, [h, w], poolWindow(op, a)), c];
}

/** The maximum of each window of an NHWC image x [N, H, W, C]: [N, OH, OW, C]. */
export const maxPool2d: OpDef<PoolAttrs> = {
  name: 'maxPool2d',
  arity: 1,
  attrs: POOL_ATTRS,
  saves: { inputs: [0], output: false },
  infer: ([x], a) => ({ shape: pooledShape('maxPool2d', x!, a), dtype: x!.dtype }),
  forward: ([x], a) => kernels().maxPool2d(x!, poolKernelWindow(a)),
  vjp: (o, { g, input, attrs }) => [o.maxPool2dGrad(input(0), g, attrs.kernel, poolOptions(attrs))],
  flops: (_, out, a) => numel(out.shape) * a.kernel[0]! * a.kernel[1]!,
};

/** g [N, OH, OW, C] added at the maximum of each window of x [N, H, W, C]: maxPool2d's VJP. */
export const maxPool2dGrad: OpDef<PoolAttrs> = {
  name: 'maxPool2dGrad',
  arity: 2,
  attrs: POOL_ATTRS,
  nondiff: [0],
  saves: { inputs: [0], output: false },
  infer: (inputs, a) => {
    const dtype = sameDType('maxPool2dGrad', inputs);
    const pooled = pooledShape('maxPool2dGrad', inputs[0]!, a);
    expectShape('maxPool2dGrad', 1, inputs[1]!.shape, pooled, 'the max pool of input 0');
    return { shape: inputs[0]!.shape, dtype };
  },
  forward: ([x, g], a) => kernels().maxPool2dGrad(x!, g!, poolKernelWindow(a)),
  vjp: (o, { g: h, input, attrs }) => [
    null,
    o.maxPool2dSelect(input(0), h, attrs.kernel, poolOptions(attrs)),
  ],
  flops: ([x]) => numel(x!.shape),
};

/** h [N, H, W, C] at the maximum of each window of x [N, H, W, C]: maxPool2dGrad's VJP. */
export const maxPool2dSelect: OpDef<PoolAttrs> = {
  name: 'maxPool2dSelect',
  arity: 2,
  attrs: POOL_ATTRS,
  nondiff: [0],
  saves: { inputs: [0], output: false },
  infer: (inputs, a) => {
    const dtype = sameDType('maxPool2dSelect', inputs);
    const pooled = pooledShape('maxPool2dSelect', inputs[0]!, a);
    expectShape('maxPool2dSelect', 1, inputs[1]!.shape, inputs[0]!.shape, 'the shape of input 0');
    return { shape: pooled, dtype };
  },
  forward: ([x, h], a) => kernels().maxPool2dSelect(x!, h!, poolKernelWindow(a)),
  vjp: (o, { g, input, attrs }) => [null, o.maxPool2dGrad(input(0), g, attrs.kernel, poolOptions(attrs))],
  flops: (_, out, a) => numel(out.shape) * a.kernel[0]! * a.kernel[1]!,
};
