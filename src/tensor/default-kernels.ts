// Chooses the kernels every thread uses, once, on import: the WebAssembly SIMD kernels where this
// engine supports them (the FMA variant when Node runs with --experimental-wasm-relaxed-simd), else the
// TypeScript ones. BACKFLOW_KERNELS=ts forces the TypeScript kernels (the fallback and the oracle).
// Every thread of a process makes the same choice (flags and the environment are per process), so
// the reference engine and the workers still compute the same bits.
import { bestWasmVariant, installWasmKernels } from './wasm/index.ts';

export const KERNELS: 'wasm' | 'ts' =
  process.env['BACKFLOW_KERNELS'] !== 'ts' && installWasmKernels() ? 'wasm' : 'ts';

/** The kernels by name and variant ('ts', 'wasm simd128', 'wasm relaxed-simd'): node processes must agree on it. */
export const KERNELS_VARIANT: string = KERNELS === 'wasm' ? `wasm ${bestWasmVariant()}` : 'ts';
