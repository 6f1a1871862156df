// The ops over NHWC images (conv2d and its two gradients, max and average pooling and their
// adjoints), where, argmax and flatten: forward values against textbook loops in float64 and closed
// forms by hand; the shape rules' errors. Their gradients are in gradcheck.test.ts.
import { describe, expect, it } from 'vitest';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { eager } from '../../src/ops/eager.ts';
import type { Conv2dOptions } from '../../src/ops/ops.ts';
import { getOp } from '../../src/ops/registry.ts';
import { fallbackKernels, useKernels } from '../../src/tensor/kernels.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise, expectWithin } from '../support/expect.ts';
import { t64 } from './domains.ts';

const rng = new Rng(99);
const real = (shape: number[]) => rng.uniformTensor(shape, -1, 1, 'float64');
const pair = (v: number | readonly number[] | undefined, d: number) =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [...v];

/** The textbook convolution: every output element summed over (kh, kw, c), padding read as zeros. */
function naiveConv(x: Tensor, w: Tensor, options: Conv2dOptions): Tensor {
  const [n, h, wd, c] = x.shape as number[] as [number, number, number, number];
  const [kh, kw, cg, f] = w.shape as number[] as [number, number, number, number];
  const [sh, sw] = pair(options.stride, 1) as [number, number];
  const [ph, pw] = pair(options.padding, 0) as [number, number];
  const [dh, dw] = pair(options.dilation, 1) as [number, number];
  const fg = f / (options.groups ?? 1);
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((wd + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  const out: number[] = [];
  for (let b = 0; b < n; b++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++)
        for (let o = 0; o < f; o++) {
          const group = Math.floor(o / fg);
          let s = 0;
          for (let p = 0; p < kh; p++)
            for (let q = 0; q < kw; q++)
              for (let t = 0; t < cg; t++) {
                const [ih, iw] = [i * sh - ph + p * dh, j * sw - pw + q * dw];
                const inside = ih >= 0 && ih < h && iw >= 0 && iw < wd;
                const v = inside ? x.data[((b * h + ih) * wd + iw) * c + group * cg + t]! : 0;
                s += v * w.data[((p * kw + q) * cg + t) * f + o]!;
              }
          out.push(s);
        }
  return tensor(out, { shape: [n, oh, ow, f], dtype: 'float64' });
}

/** <a, b> over all elements. */
const dot = (a: Tensor, b: Tensor) => {
  let s = 0;
  for (let i = 0; i < a.size; i++) s += a.data[i]! * b.data[i]!;
  return s;
};

const CONVS: [string, number[], number[], Conv2dOptions][] = [
  ['3x3 over 5x5', [2, 5, 5, 3], [3, 3, 3, 4], {}],
  ['stride 2, padding 1', [2, 6, 5, 2], [3, 3, 2, 3], { stride: 2, padding: 1 }],
  [
    'stride [1,2], padding [2,0], dilation [2,1]',
    [1, 6, 7, 2],
    [2, 3, 2, 2],
    { stride: [1, 2], padding: [2, 0], dilation: [2, 1] },
  ],
  ['2 groups', [2, 4, 4, 4], [2, 2, 2, 6], { groups: 2, padding: 1 }],
  ['depthwise, 1x1 image with padding', [1, 1, 1, 3], [3, 3, 1, 3], { groups: 3, padding: 1 }],
];

describe('conv2d', () => {
  // float64 always runs the TypeScript matmul: one float64 sum per element in (kh, kw, c) order,
  // the naive loop's order, so the values are the same bits.
  it.each(CONVS)('%s: the textbook loop, bit for bit', (_, xs, ws, options) => {
    const [x, w] = [real(xs), real(ws)];
    expectBitwise(eager.conv2d(x, w, options), naiveConv(x, w, options));
  });

  // <conv(x, w), g> = <x, conv2dInputGrad(g, w)> = <w, conv2dWeightGrad(x, g)>: each gradient is
  // the adjoint of the convolution in its operand.
  it.each(CONVS)('%s: the two gradients are its adjoints', (_, xs, ws, options) => {
    const [x, w] = [real(xs), real(ws)];
    const y = eager.conv2d(x, w, options);
    const g = real([...y.shape]);
    const dx = eager.conv2dInputGrad(g, w, [xs[1]!, xs[2]!], options);
    const dw = eager.conv2dWeightGrad(x, g, [ws[0]!, ws[1]!], options);
    expect(dx.shape).toEqual(xs);
    expect(dw.shape).toEqual(ws);
    const reference = dot(y, g);
    expect(dot(x, dx)).toBeCloseTo(reference, 12);
    expect(dot(w, dw)).toBeCloseTo(reference, 12);
  });

  it('a 1x1 filter is a matmul over the channels; a bias [F] adds along the last axis', () => {
    const x = real([2, 3, 3, 4]);
    const w = real([1, 1, 4, 5]);
    const viaMatmul = eager.reshape(
      eager.matmul(eager.reshape(x, [18, 4]), eager.reshape(w, [4, 5])),
      [2, 3, 3, 5],
    );
    expectBitwise(eager.conv2d(x, w), viaMatmul);
    const bias = real([5]);
    expect(eager.add(eager.conv2d(x, w), bias).shape).toEqual([2, 3, 3, 5]);
  });

  it('the backward splits: an input gradient alone is conv2dInputGrad, a filter gradient alone conv2dWeightGrad', () => {
    const ops = (wrt: string[]) => {
      const b = new GraphBuilder();
      const x = b.param('x', [1, 4, 4, 2]);
      const w = b.param('w', [3, 3, 2, 2]);
      b.output('loss', b.sum(b.square(b.conv2d(x, w, { padding: 1 }))));
      const graph = b.build();
      return gradGraph(graph, { loss: 'loss', wrt })
        .nodes.slice(graph.size)
        .map((n) => n.op)
        .filter((op) => op.startsWith('conv2d'));
    };
    expect(ops(['x'])).toEqual(['conv2dInputGrad']);
    expect(ops(['w'])).toEqual(['conv2dWeightGrad']);
    expect(ops(['x', 'w']).sort()).toEqual(['conv2dInputGrad', 'conv2dWeightGrad']);
  });

  // The simulator's cost model and the placement read these (flopCosts, src/sim/cost.ts).
  it('counts 2 M K F FLOPs for each of its three matmuls, M = N*OH*OW, K = KH*KW*C/groups', () => {
    const info = (shape: number[]) => ({ shape, dtype: 'float32' as const });
    const attrs = { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 };
    const [x, w, y] = [info([64, 28, 28, 1]), info([5, 5, 1, 6]), info([64, 24, 24, 6])];
    const flops = 2 * (64 * 24 * 24) * 25 * 6;
    expect(getOp('conv2d').flops!([x, w], y, attrs)).toBe(flops);
    expect(getOp('conv2dInputGrad').flops!([y, w], x, { ...attrs, size: [28, 28] })).toBe(flops);
    expect(getOp('conv2dWeightGrad').flops!([x, y], w, { ...attrs, kernel: [5, 5] })).toBe(flops);
    const pool = { kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
    expect(getOp('maxPool2d').flops!([y], info([64, 12, 12, 6]), pool)).toBe(64 * 12 * 12 * 6 * 4);
  });

  it('refuses channels that do not match the filter, F not a multiple of the groups, and a window past the image', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 4, 4, 3]);
    expect(() => b.conv2d(x, b.param('w', [3, 3, 2, 4]))).toThrow(
      /conv2d: the image has 3 channels, the filter takes 2 per group, 2 in 1 groups/,
    );
    expect(() => b.conv2d(x, b.param('w2', [3, 3, 1, 4]), { groups: 3 })).toThrow(
      /conv2d: input 1 has shape \[3,3,1,4\], expected a filter \[KH, KW, C\/groups, F\] of numbers with F a multiple of 3 groups/,
    );
    expect(() => b.conv2d(x, b.param('w3', [5, 5, 3, 1]))).toThrow(ShapeError);
    expect(() => b.conv2d(x, b.param('w4', [3, 3, 3, 1]), { dilation: 2 })).toThrow(
      /conv2d: a window reaching 5x5 pixels does not fit a 4x4 image padded by \[0,0\]/,
    );
    expect(() => b.conv2d(b.input('flat', ['B', 16]), b.param('w5', [1, 1, 16, 1]))).toThrow(
      /conv2d: input 0 has shape \[B,16\], expected an NHWC image \[N, H, W, C\]/,
    );
    // A symbolic batch passes through.
    expect(b.conv2d(x, b.param('w6', [3, 3, 3, 8]), { padding: 1, stride: 2 }).shape).toEqual(['B', 2, 2, 8]);
  });
});

describe('pooling', () => {
  // One image 4x4, one channel, values by hand.
  const img = t64([1, 5, 2, 0, 3, 4, 9, 9, -1, 7, 6, 8, 2, 2, 3, 1]);
  const x = eager.reshape(img, [1, 4, 4, 1]);

  it('maxPool2d takes each window maximum; ties go to the first, and the gradient with them', () => {
    expect(Array.from(eager.maxPool2d(x, 2).data)).toEqual([5, 9, 7, 8]);
    // The window [2, 0; 9, 9] ties: the first 9 (row 1, column 2) takes the gradient.
    const g = t64([10, 20, 30, 40]);
    const dx = eager.maxPool2dGrad(x, eager.reshape(g, [1, 2, 2, 1]), 2);
    expect(Array.from(dx.data)).toEqual([0, 10, 0, 0, 0, 0, 20, 0, 0, 30, 0, 40, 0, 0, 0, 0]);
    // maxPool2dSelect reads its second input where maxPool2dGrad writes.
    const h = eager.reshape(t64(Array.from({ length: 16 }, (_, i) => 100 + i)), [1, 4, 4, 1]);
    expect(Array.from(eager.maxPool2dSelect(x, h, 2).data)).toEqual([101, 106, 109, 111]);
  });

  it('overlapping windows add their cotangents at a shared maximum; padding is never the maximum', () => {
    // 3x3, stride 1, padding 1 over negative values: every window holds padding, which must not win.
    const negative = eager.neg(eager.add(eager.abs(x), 1));
    const pooled = eager.maxPool2d(negative, 3, { stride: 1, padding: 1 });
    expect(Array.from(pooled.data).every((v) => v < 0)).toBe(true);
    expect(pooled.data[0]).toBe(-2); // the top-left window: -2, -6, -4, -5
    const ones = eager.maxPool2dGrad(x, eager.reshape(t64(Array(16).fill(1)), [1, 4, 4, 1]), 3, {
      stride: 1,
      padding: 1,
    });
    // Each pixel gets one for every window whose maximum it is; 16 windows in all.
    expect(dot(ones, eager.reshape(t64(Array(16).fill(1)), [1, 4, 4, 1]))).toBe(16);
    // The first 9 (row 1, column 2) wins all 9 windows that hold it, the other 9 none.
    expect([ones.data[6], ones.data[7]]).toEqual([9, 0]);
  });

  it('a NaN in a window wins it, as in the max reduction', () => {
    const withNaN = eager.reshape(t64([1, Number.NaN, 3, 2]), [1, 2, 2, 1]);
    expect(eager.maxPool2d(withNaN, 2).data[0]).toBeNaN();
  });

  it('avgPool2d divides by the window area, padding counted as zeros; its adjoint spreads back', () => {
    expect(Array.from(eager.avgPool2d(x, 2).data)).toEqual([13 / 4, 20 / 4, 10 / 4, 18 / 4]);
    const padded = eager.avgPool2d(x, 3, { stride: 3, padding: 1 });
    // Windows at rows/columns -1..1 and 2..4: the corner one holds 1, 5, 3, 4 and five zeros.
    expect(padded.shape).toEqual([1, 2, 2, 1]);
    expect(padded.data[0]).toBe(13 / 9);
    const g = eager.reshape(t64([9, 18, 27, 36]), [1, 2, 2, 1]);
    const dx = eager.avgPool2dGrad(g, [4, 4], 3, { stride: 3, padding: 1 });
    expect(Array.from(dx.data)).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    expect(dot(padded, g)).toBeCloseTo(dot(x, dx), 12);
  });

  it('refuses padding up to the kernel and a cotangent of the wrong shape', () => {
    const b = new GraphBuilder();
    const image = b.input('x', ['B', 4, 4, 2]);
    expect(() => b.maxPool2d(image, 2, { padding: 2 })).toThrow(
      /maxPool2d: padding \[2,2\] must be below the kernel \[2,2\]/,
    );
    expect(() => b.maxPool2dGrad(image, b.input('g', ['B', 3, 3, 2]), 2)).toThrow(
      /maxPool2dGrad: input 1 has shape \[B,3,3,2\], expected \[B,2,2,2\] \(the max pool of input 0\)/,
    );
    expect(b.avgPool2d(image, [2, 1], { stride: 1 }).shape).toEqual(['B', 3, 4, 2]);
  });
});

describe('where, comparisons, argmax, flatten', () => {
  it('where picks a where the condition is nonzero, broadcasting all three; the other value never leaks', () => {
    const cond = t64([1, 0, 2]);
    const a = t64([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(Array.from(eager.where(cond, a, -1).data)).toEqual([1, -1, 3, 4, -1, 6]);
    const inf = eager.where(t64([[1], [0]]), t64([Number.POSITIVE_INFINITY]), 7);
    expect(Array.from(inf.data)).toEqual([Number.POSITIVE_INFINITY, 7]);
    // A float32 mask over float64 values: the output takes the values' dtype.
    expect(eager.where(t64([1, 0], 'float32'), t64([1, 2]), t64([3, 4])).dtype).toBe('float64');
    expect(() => eager.where(cond, t64([1, 2]), 0)).toThrow(
      /where: the condition \[3\] and the values \[2\] and \[\] do not broadcast/,
    );
  });

  it('less and lessEqual are greater and greaterEqual with the operands swapped', () => {
    const [a, b] = [t64([1, 2, 3]), t64([2, 2, 2])];
    expect(Array.from(eager.less(a, b).data)).toEqual([1, 0, 0]);
    expect(Array.from(eager.lessEqual(a, b).data)).toEqual([1, 1, 0]);
  });

  it('argmax gives the first maximum along an axis, in the dtype of its input', () => {
    const x = t64(
      [
        [1, 3, 3],
        [7, 0, -1],
      ],
      'float32',
    );
    const last = eager.argmax(x);
    expect(last.dtype).toBe('float32');
    expect(Array.from(last.data)).toEqual([1, 0]);
    expect(Array.from(eager.argmax(x, 0).data)).toEqual([1, 0, 0]);
    expect(Array.from(eager.argmax(t64([0, Number.NaN, 5, Number.NaN])).data)).toEqual([1]);
  });

  it('flatten keeps the leading axes and multiplies the rest, symbolic batch included', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 4, 4, 8]);
    expect(b.flatten(x).shape).toEqual(['B', 128]);
    expect(b.flatten(x, 2).shape).toEqual(['B', 4, 32]);
    expect(b.flatten(x, -1).shape).toEqual(['B', 4, 4, 8]);
    expect(b.flatten(b.input('y', [2, 3]), 0).shape).toEqual([6]);
  });
});

// Float32 runs on the active kernels: the WebAssembly SIMD matmul where it runs (sums in float32),
// the TypeScript one (the oracle: float64 sums rounded once) under BACKFLOW_KERNELS=ts.
describe('conv2d in float32, through the matmul kernel', () => {
  const x = real([2, 6, 6, 3]);
  const w = real([3, 3, 3, 8]);
  const g = real([2, 6, 6, 8]);
  const options = { padding: 1 };
  const f32 = (t: Tensor) => cast(t, 'float32');
  const abs = (t: Tensor) => eager.abs(t);
  /** Each conv op on float32 operands, and its inner dimension (the length of each float32 sum). */
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, Tensor, Tensor, number][] = [
    ['conv2d', (a, b) => eager.conv2d(a, b, options), x, w, 3 * 3 * 3],
    ['conv2dInputGrad', (a, b) => eager.conv2dInputGrad(a, b, [6, 6], options), g, w, 8],
    ['conv2dWeightGrad', (a, b) => eager.conv2dWeightGrad(a, b, [3, 3], options), x, g, 2 * 6 * 6],
  ];

  // conv2dInputGrad rounds twice: each patch element of G W^T, then their sum at each pixel.
  it.each(cases.filter(([name]) => name !== 'conv2dInputGrad'))(
    '%s: the TypeScript kernels round the float64 result once',
    (_, op, a, b) => {
      const restore = useKernels(fallbackKernels());
      try {
        const [a32, b32] = [f32(a), f32(b)];
        expectBitwise(op(a32, b32), f32(op(cast(a32, 'float64'), cast(b32, 'float64'))));
      } finally {
        restore();
      }
    },
  );

  // The tolerance of test/tensor/wasm-kernels.test.ts for matmul: 1e-5 sqrt(k) sum |products|.
  it.each(cases)(
    '%s: the active kernels within the matmul tolerance of the TypeScript ones',
    (_, op, a, b, k) => {
      const [a32, b32] = [f32(a), f32(b)];
      const restore = useKernels(fallbackKernels());
      let oracle: Tensor;
      try {
        oracle = op(a32, b32);
      } finally {
        restore();
      }
      const scale = op(abs(a), abs(b));
      expectWithin(op(a32, b32), oracle, (i) => 1e-5 * Math.sqrt(k) * scale.data[i]!);
    },
  );
});
