// Chooses the kernels every thread uses, once, on import: the WebAssembly SIMD kernels where this
// engine supports them (the relaxed-SIMD FMA variant where it fuses, Note [relaxed SIMD for every
// process] in wasm/instance.ts), else the TypeScript ones. BACKFLOW_KERNELS=ts forces the TypeScript
// kernels (the fallback and the oracle), BACKFLOW_WASM_RELAXED=0 the simd128 ones. Every thread of a
// process makes the same choice (flags and the environment are per process), so the reference engine
// and the workers still compute the same bits; a host is told the coordinator's choice in its
// HostInit and switches to it (selectKernels), which is how node processes agree with it.
import { InputError } from '../errors.ts';
import { fallbackKernels, useKernels } from './kernels.ts';
import { createWasmKernels, type WasmVariant, wasmVariants } from './wasm/index.ts';

/**
 * The kernels this process may run, by name, best first: 'wasm relaxed-simd', 'wasm simd128' where
 * the engine runs them and the environment allows, and always 'ts'. Node processes announce it.
 */
export const KERNELS_OFFERED: readonly string[] =
  process.env['BACKFLOW_KERNELS'] === 'ts' ? ['ts'] : [...wasmVariants().map((v) => `wasm ${v}`), 'ts'];

/** This process's choice, by name ('ts', 'wasm simd128', 'wasm relaxed-simd'): the best offered. */
export const KERNELS_VARIANT: string = KERNELS_OFFERED[0]!;

export const KERNELS: 'wasm' | 'ts' = KERNELS_VARIANT === 'ts' ? 'ts' : 'wasm';

/** The kernels of a name offered here, as useKernels takes them. */
function kernelsNamed(name: string) {
  return name === 'ts' ? fallbackKernels() : createWasmKernels(name.slice('wasm '.length) as WasmVariant);
}

if (KERNELS === 'wasm') useKernels(kernelsNamed(KERNELS_VARIANT));

let selected = KERNELS_VARIANT;

/** The kernels this thread runs, by name: KERNELS_VARIANT unless selectKernels chose others. */
export function kernelsInUse(): string {
  return selected;
}

/**
 * Makes this thread run the kernels named (a host does, with its coordinator's choice from the
 * HostInit); nothing changes when it runs them already. An InputError naming the worker when this
 * process does not offer them.
 */
export function selectKernels(name: string, worker: number): void {
  if (name === selected) return;
  if (!KERNELS_OFFERED.includes(name))
    throw new InputError(
      `worker ${worker}: the coordinator runs the kernels '${name}', this process offers ${KERNELS_OFFERED.join(', ')} (they round differently)`,
      { worker, expected: KERNELS_OFFERED.join(' | '), found: name },
    );
  useKernels(kernelsNamed(name));
  selected = name;
}
