/**
 * The WebAssembly kernels over image windows (src/tensor/wasm/window.wat) against what they replace:
 * - conv2d and its filter gradient without the patch matrix: bitwise im2col around the wasm matmul
 *   of the same variant (Note [implicit patches]), NaN and infinities included; the image gradient
 *   bitwise col2im (float64 sums, TypeScript) of the wasm matmul G W^T, NaN payloads aside;
 * - max pooling and, for windows that do not overlap, its gradient: bitwise the TypeScript kernels
 *   (the same picks: ties to the first tap, the first NaN wins), NaN payloads aside;
 * - shapes they do not take (float64, groups, dilation along the width) are refused (null), and the
 *   kernels then compose im2col and the matmul.
 */
import { describe, expect, it } from 'vitest';
import {
  conv2dByPatches,
  conv2dInputGradByPatches,
  conv2dWeightGradByPatches,
  type PatchKernels,
} from '../../src/tensor/conv.ts';
import { fallbackKernels } from '../../src/tensor/kernels.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor } from '../../src/tensor/tensor.ts';
import { createWasmKernels, wasmVariants } from '../../src/tensor/wasm/index.ts';
import { wasmArena } from '../../src/tensor/wasm/instance.ts';
import {
  wasmConv2d,
  wasmConv2dInputGrad,
  wasmConv2dWeightGrad,
  wasmMaxPool2d,
  wasmMaxPool2dGrad,
} from '../../src/tensor/wasm/window.ts';
import { type Window2d, windowCount } from '../../src/tensor/window.ts';
import { expectBitwise, expectSameValues } from '../support/expect.ts';

/** Normal values with NaN, infinities and signed zeros sprinkled in at `rate`. */
function withSpecials(rng: Rng, shape: number[], rate: number): Tensor {
  const t = rng.normalTensor(shape);
  const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0];
  for (let i = 0; i < t.size; i++) if (rng.next() < rate) t.data[i] = specials[rng.int(specials.length)]!;
  return t;
}

interface Case {
  x: number[];
  w: number[];
  win: Window2d;
}

/** LeNet-5's two convolutions, then random odd ones: strides, padding, dilation along the height. */
function cases(rng: Rng, count: number): Case[] {
  const out: Case[] = [
    {
      x: [4, 28, 28, 1],
      w: [5, 5, 1, 6],
      win: { kernel: [5, 5], stride: [1, 1], padding: [2, 2], dilation: [1, 1] },
    },
    {
      x: [3, 14, 14, 6],
      w: [5, 5, 6, 16],
      win: { kernel: [5, 5], stride: [1, 1], padding: [0, 0], dilation: [1, 1] },
    },
  ];
  while (out.length < count) {
    const [kh, kw, c, f, dh] = [
      1 + rng.int(4),
      1 + rng.int(4),
      1 + rng.int(7),
      1 + rng.int(19),
      1 + rng.int(2),
    ];
    const win = {
      kernel: [kh, kw],
      stride: [1 + rng.int(2), 1 + rng.int(3)],
      padding: [rng.int(kh), rng.int(kw)],
      dilation: [dh, 1],
    };
    out.push({ x: [1 + rng.int(3), dh * kh + rng.int(6), kw + rng.int(6), c], w: [kh, kw, c, f], win });
  }
  return out;
}

const outputShape = ({ x, w, win }: Case) => [
  x[0]!,
  windowCount(x[1]!, w[0]!, win.stride[0]!, win.padding[0]!, win.dilation[0]),
  windowCount(x[2]!, w[1]!, win.stride[1]!, win.padding[1]!, win.dilation[1]),
  w[3]!,
];

describe.each(wasmVariants())('wasm window kernels (%s)', (variant) => {
  const arena = wasmArena(variant);
  const patches: PatchKernels = {
    ...fallbackKernels(),
    matmul: createWasmKernels(variant, { small: false }).matmul,
  };

  it('conv2d and its two gradients are bitwise im2col (col2im) around the wasm matmul', () => {
    const rng = new Rng(31);
    for (const [i, c] of cases(rng, 40).entries()) {
      const rate = i % 4 === 3 ? 0.05 : 0;
      const [x, w, g] = [
        withSpecials(rng, c.x, rate),
        withSpecials(rng, c.w, rate),
        rng.normalTensor(outputShape(c)),
      ];
      const y = wasmConv2d(arena, x, w, c.win, 1);
      expect(y).not.toBeNull();
      expectBitwise(y!, conv2dByPatches(patches, x, w, c.win, 1));
      const dw = wasmConv2dWeightGrad(arena, x, g, c.win, 1);
      expect(dw).not.toBeNull();
      expectBitwise(dw!, conv2dWeightGradByPatches(patches, x, g, c.win, 1));
      const dx = wasmConv2dInputGrad(arena, g, w, c.win, 1, c.x);
      expect(dx).not.toBeNull();
      expectSameValues(dx!, conv2dInputGradByPatches(patches, g, w, c.win, 1, c.x));
    }
  });

  it('refuses float64, groups and dilation along the width', () => {
    const rng = new Rng(5);
    const [x, w] = [rng.normalTensor([1, 6, 6, 2]), rng.normalTensor([3, 3, 2, 4])];
    const win = { kernel: [3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1] };
    expect(wasmConv2d(arena, cast(x, 'float64'), cast(w, 'float64'), win, 1)).toBeNull();
    expect(wasmConv2d(arena, x, w, win, 2)).toBeNull();
    expect(wasmConv2d(arena, x, w, { ...win, dilation: [1, 2] }, 1)).toBeNull();
    const g = rng.normalTensor([1, 6, 6, 4]);
    expect(wasmConv2dInputGrad(arena, g, w, win, 2, [1, 6, 6, 2])).toBeNull();
    expect(wasmConv2dWeightGrad(arena, x, cast(g, 'float64'), win, 1)).toBeNull();
  });

  it('max pooling and its gradient are the TypeScript kernels, ties and NaN included', () => {
    const rng = new Rng(41);
    const ts = fallbackKernels();
    const pools = [
      { x: [3, 28, 28, 6], win: { kernel: [2, 2], stride: [2, 2], padding: [0, 0] } },
      { x: [2, 10, 10, 16], win: { kernel: [2, 2], stride: [2, 2], padding: [0, 0] } },
      // 2x2 with a row and a column in no window, and channels that end mid-vector
      { x: [2, 7, 9, 3], win: { kernel: [2, 2], stride: [2, 2], padding: [0, 0] } },
      { x: [1, 6, 6, 5], win: { kernel: [2, 2], stride: [2, 2], padding: [0, 0] } },
    ];
    while (pools.length < 40) {
      const [kh, kw] = [1 + rng.int(3), 1 + rng.int(3)];
      const win = {
        kernel: [kh, kw],
        stride: [1 + rng.int(3), 1 + rng.int(3)],
        padding: [rng.int(kh), rng.int(kw)],
      };
      pools.push({ x: [1 + rng.int(2), kh + rng.int(6), kw + rng.int(6), 1 + rng.int(9)], win });
    }
    for (const [i, { x: shape, win }] of pools.entries()) {
      // Few distinct values, so windows tie; some NaN and signed zeros.
      const x = withSpecials(rng, shape, i % 3 === 2 ? 0.1 : 0);
      for (let k = 0; k < x.size; k++) x.data[k] = Math.round(x.data[k]! * 2) / 2;
      const y = wasmMaxPool2d(arena, x, win);
      expect(y).not.toBeNull();
      expectSameValues(y!, ts.maxPool2d(x, win));
      const g = withSpecials(rng, [...y!.shape], 0.05);
      const dx = wasmMaxPool2dGrad(arena, x, g, win);
      const overlap = win.stride[0]! < win.kernel[0]! || win.stride[1]! < win.kernel[1]!;
      expect(dx === null).toBe(overlap);
      if (dx !== null) expectSameValues(dx, ts.maxPool2dGrad(x, g, win));
    }
  });
});
