/**
 * WebAssembly SIMD kernels for the hot float32 ops: matmul (all transposes, batched), the cheap
 * elementwise ops with the common broadcasts, sum and max over trailing or leading axes, softmax and
 * logSoftmax over the last axis. Everything else falls back to the TypeScript kernels, which stay the
 * oracle: test/tensor/wasm-kernels.test.ts states how closely these agree with them.
 */
import '../kernels-ts.ts';
import { fallbackKernels, type Kernels, useKernels } from '../kernels.ts';
import { wasmBinary, wasmReduce, wasmSoftmax, wasmUnary } from './elementwise.ts';
import { type WasmArena, type WasmVariant, wasmArena, wasmVariants } from './instance.ts';
import { wasmMatmul } from './matmul.ts';

export { type WasmVariant, wasmVariants } from './instance.ts';

/** The kernels the wasm module provides. */
export type WasmKernels = Pick<Kernels, 'matmul' | 'unary' | 'binary' | 'reduce' | 'softmax' | 'logSoftmax'>;

/** Kernels over the arena `get` returns, or the TypeScript kernels while it returns null. */
function kernelsOver(get: () => WasmArena | null): WasmKernels {
  return {
    matmul: (a, b, transA, transB) => {
      const arena = get();
      return arena ? wasmMatmul(arena, a, b, transA, transB) : fallbackKernels().matmul(a, b, transA, transB);
    },
    unary: (kind, x, param) => {
      const arena = get();
      return arena ? wasmUnary(arena, kind, x, param) : fallbackKernels().unary(kind, x, param);
    },
    binary: (kind, a, b) => {
      const arena = get();
      return arena ? wasmBinary(arena, kind, a, b) : fallbackKernels().binary(kind, a, b);
    },
    reduce: (kind, x, axes) => {
      const arena = get();
      return arena ? wasmReduce(arena, kind, x, axes) : fallbackKernels().reduce(kind, x, axes);
    },
    softmax: (x, axis) => {
      const arena = get();
      return arena ? wasmSoftmax(arena, x, axis, false) : fallbackKernels().softmax(x, axis);
    },
    logSoftmax: (x, axis) => {
      const arena = get();
      return arena ? wasmSoftmax(arena, x, axis, true) : fallbackKernels().logSoftmax(x, axis);
    },
  };
}

/** The wasm kernels of one variant (throws when this engine lacks it): for tests and benchmarks. */
export function createWasmKernels(variant: WasmVariant): WasmKernels {
  const arena = wasmArena(variant);
  return kernelsOver(() => arena);
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
