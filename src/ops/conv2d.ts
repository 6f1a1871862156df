import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import type { Window2d } from '../tensor/window.ts';
import type { OpDef, TypeInfo } from './op.ts';
import type { Conv2dOptions } from './ops.ts';
import { numel, sameDType } from './rules.ts';
import { expectShape, imageDims, windowOutput } from './window.ts';

export interface Conv2dAttrs {
  readonly stride: readonly number[];
  /** Zeros on both sides of height and width. */
  readonly padding: readonly number[];
  readonly dilation: readonly number[];
  /** Channels and filters split into this many groups, each convolved on its own. */
  readonly groups: number;
  readonly [key: string]: unknown;
}

export interface Conv2dInputGradAttrs extends Conv2dAttrs {
  /** The input image's height and width (several give the same output size). */
  readonly size: readonly number[];
}

export interface Conv2dWeightGradAttrs extends Conv2dAttrs {
  /** The filter's height and width. */
  readonly kernel: readonly number[];
}

const CONV_ATTRS = { stride: 'pair', padding: 'padding', dilation: 'pair', groups: 'count' } as const;

// Note [conv2d layout]
// Images are NHWC [N, H, W, C] and filters HWIO [KH, KW, C/groups, F], TensorFlow's defaults. In
// NHWC the pixels of a window are runs of C contiguous channels, so im2col copies runs, and its row
// for output pixel (n, oh, ow), ordered (kh, kw, c), meets the filter viewed as the matrix
// [KH*KW*C/groups, F] without a copy: conv2d is im2col then one matmul [N*OH*OW, K] x [K, F], whose
// product [N*OH*OW, F] already is the NHWC output, and a bias [F] adds along the last axis, the
// elementwise kernels' fast row broadcast. NCHW would need the product transposed back, or one
// matmul per image. Each half of the backward is one matmul too: the input's gradient is
// col2im(G W^T), the filter's im2col(x)^T G; they are separate ops, so a zero-bubble schedule runs
// them as its I and W parts (`needs`, as matmul's VJP). With groups > 1 the matmul is batched over
// the groups, and the filter and the output are transposed between [.., groups, F/groups] and
// [groups, .., F/groups]. Each op is one kernel (conv2d, conv2dInputGrad, conv2dWeightGrad): the
// TypeScript kernels compose im2col, col2im and the matmul so (src/tensor/conv.ts), and the wasm
// kernels compute the same matmuls without the patch matrix (Note [implicit patches],
// src/tensor/wasm/window.wat) where the shapes allow.

/** The options a conv2d gradient passes on: the attributes every conv op shares. */
const convOptions = (a: Conv2dAttrs): Conv2dOptions => ({
  stride: a.stride,
  padding: a.padding,
  dilation: a.dilation,
  groups: a.groups,
});

const windowOf = (kernel: readonly number[], a: Conv2dAttrs): Window2d => ({
  kernel,
  stride: a.stride,
  padding: a.padding,
  dilation: a.dilation,
});

/** A filter [KH, KW, C/groups, F] with F a multiple of the groups. */
function filterDims(
  op: string,
  input: number,
  w: TypeInfo,
  groups: number,
): [number, number, number, number] {
  const s = w.shape;
  if (s.length !== 4 || s.some((d) => typeof d !== 'number') || (s[3] as number) % groups !== 0) {
    throw new ShapeError(
      `${op}: input ${input} has shape ${fmtShape(s)}, expected a filter [KH, KW, C/groups, F] of numbers with F a multiple of ${groups} groups`,
      { op, input, expected: '[KH, KW, C/groups, F]', found: s },
    );
  }
  return s as [number, number, number, number];
}

function checkChannels(op: string, c: number, perGroup: number, groups: number): void {
  if (c !== perGroup * groups) {
    throw new ShapeError(
      `${op}: the image has ${c} channels, the filter takes ${perGroup} per group, ${perGroup * groups} in ${groups} groups`,
      { op, input: 1, expected: perGroup * groups, found: c },
    );
  }
}

/** Two FLOPs per multiply-add: `perElement` of them for each element of `out`. */
const convFlops = (out: TypeInfo['shape'], perElement: number) => 2 * numel(out) * perElement;

/**
 * 2-D convolution (cross-correlation, as in every framework) of an NHWC image x [N, H, W, C] with a
 * filter w [KH, KW, C/groups, F]: [N, OH, OW, F], OH = floor((H + 2 padding - dilation (KH - 1) - 1)
 * / stride) + 1, likewise OW. Layout and kernels: Note [conv2d layout].
 */
export const conv2d: OpDef<Conv2dAttrs> = {
  name: 'conv2d',
  arity: 2,
  attrs: CONV_ATTRS,
  saves: { inputs: 'all', output: false },
  infer: (inputs, a) => {
    const dtype = sameDType('conv2d', inputs);
    const [n, h, w, c] = imageDims('conv2d', 0, inputs[0]!);
    const [kh, kw, cg, f] = filterDims('conv2d', 1, inputs[1]!, a.groups);
    checkChannels('conv2d', c, cg, a.groups);
    return { shape: [n, ...windowOutput('conv2d', [h, w], windowOf([kh, kw], a)), f], dtype };
  },
  forward: ([x, w], a) => {
    const [kh, kw] = w!.shape as [number, number];
    return kernels().conv2d(x!, w!, windowOf([kh, kw], a), a.groups);
  },
  vjp: (o, { g, input, needs, inputShapes, attrs }) => {
    const [xs, ws] = [inputShapes[0]!, inputShapes[1]!];
    const options = convOptions(attrs);
    return [
      needs[0] ? o.conv2dInputGrad(g, input(1), [xs[1] as number, xs[2] as number], options) : null,
      needs[1] ? o.conv2dWeightGrad(input(0), g, [ws[0] as number, ws[1] as number], options) : null,
    ];
  },
  flops: ([, w], out) => convFlops(out.shape, numel(w!.shape.slice(0, 3))),
};

/**
 * The gradient of conv2d with respect to its image: g [N, OH, OW, F] and the filter w to an image
 * [N, H, W, C] of `size` [H, W], col2im(g W^T). Linear in each input: its VJP is a conv2d (for g)
 * and a conv2dWeightGrad (for w).
 */
export const conv2dInputGrad: OpDef<Conv2dInputGradAttrs> = {
  name: 'conv2dInputGrad',
  arity: 2,
  attrs: { ...CONV_ATTRS, size: 'pair' },
  saves: { inputs: 'all', output: false },
  infer: (inputs, a) => {
    const op = 'conv2dInputGrad';
    const dtype = sameDType(op, inputs);
    const n = imageDims(op, 0, inputs[0]!)[0];
    const [kh, kw, cg, f] = filterDims(op, 1, inputs[1]!, a.groups);
    const [oh, ow] = windowOutput(op, a.size, windowOf([kh, kw], a));
    expectShape(op, 0, inputs[0]!.shape, [n, oh, ow, f], `the output of conv2d on ${fmtShape(a.size)}`);
    return { shape: [n, a.size[0]!, a.size[1]!, cg * a.groups], dtype };
  },
  forward: ([g, w], a) => {
    const [kh, kw, cg] = w!.shape as [number, number, number];
    const shape = [g!.shape[0]!, a.size[0]!, a.size[1]!, cg * a.groups];
    return kernels().conv2dInputGrad(g!, w!, windowOf([kh, kw], a), a.groups, shape);
  },
  vjp: (o, { g: h, input, needs, inputShapes, attrs }) => {
    const ws = inputShapes[1]!;
    const options = convOptions(attrs);
    return [
      needs[0] ? o.conv2d(h, input(1), options) : null,
      needs[1] ? o.conv2dWeightGrad(h, input(0), [ws[0] as number, ws[1] as number], options) : null,
    ];
  },
  flops: ([g, w]) => convFlops(g!.shape, numel(w!.shape.slice(0, 3))),
};

/**
 * The gradient of conv2d with respect to its filter: the image x [N, H, W, C] and g [N, OH, OW, F]
 * to a filter [KH, KW, C/groups, F] of `kernel` [KH, KW], im2col(x)^T g. Linear in each input: its
 * VJP is a conv2dInputGrad (for x) and a conv2d (for g).
 */
export const conv2dWeightGrad: OpDef<Conv2dWeightGradAttrs> = {
  name: 'conv2dWeightGrad',
  arity: 2,
  attrs: { ...CONV_ATTRS, kernel: 'pair' },
  saves: { inputs: 'all', output: false },
  infer: (inputs, a) => {
    const op = 'conv2dWeightGrad';
    const dtype = sameDType(op, inputs);
    const [n, h, w, c] = imageDims(op, 0, inputs[0]!);
    const f = imageDims(op, 1, inputs[1]!)[3];
    if (c % a.groups !== 0 || f % a.groups !== 0) {
      throw new ShapeError(`${op}: ${c} channels and ${f} filters do not split into ${a.groups} groups`, {
        op,
        expected: `multiples of ${a.groups}`,
        found: [c, f],
      });
    }
    const [oh, ow] = windowOutput(op, [h, w], windowOf(a.kernel, a));
    expectShape(op, 1, inputs[1]!.shape, [n, oh, ow, f], 'the output of conv2d on input 0');
    return { shape: [a.kernel[0]!, a.kernel[1]!, c / a.groups, f], dtype };
  },
  forward: ([x, g], a) => kernels().conv2dWeightGrad(x!, g!, windowOf(a.kernel, a), a.groups),
  vjp: (o, { g: k, input, needs, inputShapes, attrs }) => {
    const xs = inputShapes[0]!;
    const options = convOptions(attrs);
    return [
      needs[0] ? o.conv2dInputGrad(input(1), k, [xs[1] as number, xs[2] as number], options) : null,
      needs[1] ? o.conv2d(input(0), k, options) : null,
    ];
  },
  flops: ([, g], out) => convFlops(g!.shape, numel(out.shape.slice(0, 3))),
};
