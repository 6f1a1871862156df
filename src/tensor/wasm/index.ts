/**
 * WebAssembly SIMD kernels for the hot float32 ops: matmul (all transposes, batched), the cheap
 * elementwise ops with the common broadcasts, erf, exp, GELU and its derivative, sum and max over
 * trailing or leading axes, softmax and logSoftmax over the last axis, sums of squares. Everything
 * else falls back to the TypeScript kernels, which stay the oracle: test/tensor/wasm-kernels.test.ts
 * states how closely these agree with them.
 */
import '../kernels-ts.ts';
import {
  conv2dByPatches,
  conv2dInputGradByPatches,
  conv2dWeightGradByPatches,
  type PatchKernels,
} from '../conv.ts';
import { fallbackKernels, type Kernels, useKernels } from '../kernels.ts';
import type { Tensor } from '../tensor.ts';
import { type Window2d, windowCount } from '../window.ts';
import { wasmBinary, wasmReduce, wasmSoftmax, wasmSumSquares, wasmUnary } from './elementwise.ts';
import { type WasmArena, type WasmVariant, wasmArena, wasmVariants } from './instance.ts';
import { wasmMatmul } from './matmul.ts';
import {
  wasmConv2d,
  wasmConv2dInputGrad,
  wasmConv2dWeightGrad,
  wasmMaxPool2d,
  wasmMaxPool2dGrad,
} from './window.ts';

export { type WasmVariant, wasmVariants } from './instance.ts';

/** The kernels the wasm module provides. */
export type WasmKernels = Pick<
  Kernels,
  | 'matmul'
  | 'unary'
  | 'binary'
  | 'reduce'
  | 'softmax'
  | 'logSoftmax'
  | 'sumSquares'
  | 'conv2d'
  | 'conv2dInputGrad'
  | 'conv2dWeightGrad'
  | 'maxPool2d'
  | 'maxPool2dGrad'
>;

// Note [small tensors stay in TypeScript]
// A call into wasm costs about 2 us of copying and setup whatever the size, so below a few hundred
// elements (or a few thousand multiply-adds for matmul) the TypeScript kernels are faster: a graph of
// a million f32[4] nodes ran 3.5x slower on wasm. The choice depends on shapes only, so the reference
// engine and the workers still make the same choice for the same tensors and agree bit for bit.
const SMALL_ELEMENTS = 256;
const SMALL_MACS = 4096;

function matmulMacs(a: Tensor, b: Tensor, transA: boolean): number {
  const k = transA ? a.shape[a.rank - 2]! : a.shape[a.rank - 1]!;
  return (a.size / k) * (b.size / k) * k;
}

/** The multiply-adds of each of a convolution's three matmuls (M K F) on an image x, one group. */
function convMacs(x: Tensor, win: Window2d, filters: number): number {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const [kh, kw] = win.kernel as [number, number];
  const oh = windowCount(h, kh, win.stride[0]!, win.padding[0]!, win.dilation[0]);
  const ow = windowCount(w, kw, win.stride[1]!, win.padding[1]!, win.dilation[1]);
  return n * oh * ow * kh * kw * c * filters;
}

/** Kernels over the arena `get` returns, or the TypeScript kernels while it returns null. */
function kernelsOver(get: () => WasmArena | null, small = true): WasmKernels {
  const arenaFor = (size: number, limit: number) => (small && size < limit ? null : get());
  const matmul: Kernels['matmul'] = (a, b, transA, transB) => {
    const arena = a.rank === 2 && b.rank === 2 ? arenaFor(matmulMacs(a, b, transA), SMALL_MACS) : get();
    return arena ? wasmMatmul(arena, a, b, transA, transB) : fallbackKernels().matmul(a, b, transA, transB);
  };
  // Note: the convolutions these kernels do not take are im2col (or col2im) around this matmul, as
  // they were before they had kernels of their own; those they take give the same bits (Note
  // [implicit patches]), and a small one stays in TypeScript as its matmul would.
  const patches = (): PatchKernels => ({ ...fallbackKernels(), matmul });
  return {
    matmul,
    unary: (kind, x, param) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return arena ? wasmUnary(arena, kind, x, param) : fallbackKernels().unary(kind, x, param);
    },
    binary: (kind, a, b) => {
      const arena = arenaFor(Math.max(a.size, b.size), SMALL_ELEMENTS);
      return arena ? wasmBinary(arena, kind, a, b) : fallbackKernels().binary(kind, a, b);
    },
    reduce: (kind, x, axes) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return arena ? wasmReduce(arena, kind, x, axes) : fallbackKernels().reduce(kind, x, axes);
    },
    softmax: (x, axis) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return arena ? wasmSoftmax(arena, x, axis, false) : fallbackKernels().softmax(x, axis);
    },
    logSoftmax: (x, axis) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return arena ? wasmSoftmax(arena, x, axis, true) : fallbackKernels().logSoftmax(x, axis);
    },
    sumSquares: (x) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return arena ? wasmSumSquares(arena, x) : fallbackKernels().sumSquares(x);
    },
    conv2d: (x, w, win, groups) => {
      const arena = groups === 1 ? arenaFor(convMacs(x, win, w.shape[3]!), SMALL_MACS) : null;
      return (arena && wasmConv2d(arena, x, w, win, groups)) ?? conv2dByPatches(patches(), x, w, win, groups);
    },
    conv2dInputGrad: (g, w, win, groups, shape) => {
      const arena = groups === 1 ? arenaFor((g.size * w.size) / w.shape[3]!, SMALL_MACS) : null;
      return (
        (arena && wasmConv2dInputGrad(arena, g, w, win, groups, shape)) ??
        conv2dInputGradByPatches(patches(), g, w, win, groups, shape)
      );
    },
    conv2dWeightGrad: (x, g, win, groups) => {
      const arena = groups === 1 ? arenaFor(convMacs(x, win, g.shape[3]!), SMALL_MACS) : null;
      return (
        (arena && wasmConv2dWeightGrad(arena, x, g, win, groups)) ??
        conv2dWeightGradByPatches(patches(), x, g, win, groups)
      );
    },
    maxPool2d: (x, win) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return (arena && wasmMaxPool2d(arena, x, win)) ?? fallbackKernels().maxPool2d(x, win);
    },
    maxPool2dGrad: (x, g, win) => {
      const arena = arenaFor(x.size, SMALL_ELEMENTS);
      return (arena && wasmMaxPool2dGrad(arena, x, g, win)) ?? fallbackKernels().maxPool2dGrad(x, g, win);
    },
  };
}

/** The wasm kernels of one variant (throws when this engine lacks it): for tests and benchmarks. */
export function createWasmKernels(variant: WasmVariant, options: { small?: boolean } = {}): WasmKernels {
  const arena = wasmArena(variant);
  return kernelsOver(() => arena, options.small ?? true);
}

/** The best variant this engine supports, or null without WebAssembly SIMD. */
export function bestWasmVariant(): WasmVariant | null {
  return wasmVariants()[0] ?? null;
}

/**
 * The wasm kernels of the best variant, instantiated on first call in each thread; the TypeScript
 * kernels where WebAssembly SIMD is unavailable. Every thread of one process picks the same variant
 * (V8 flags are per process), so the reference engine and the actor runtime still agree bitwise.
 */
export const wasmKernels: WasmKernels = kernelsOver(() => {
  const variant = bestWasmVariant();
  return variant === null ? null : wasmArena(variant);
});

/**
 * Makes the wasm kernels the active ones (the rest stay as they are). Returns false, changing
 * nothing, where WebAssembly SIMD (or the variant asked for) is unavailable.
 */
export function installWasmKernels(options: { variant?: WasmVariant } = {}): boolean {
  const variant = options.variant ?? bestWasmVariant();
  if (variant === null || !wasmVariants().includes(variant)) return false;
  useKernels(createWasmKernels(variant));
  return true;
}
