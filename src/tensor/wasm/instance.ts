/**
 * Loading the WebAssembly kernels: which variants this engine supports, one instance per variant per
 * thread (compiled on first use), and the arena that lays out one call's buffers in its memory.
 */
import { setFlagsFromString } from 'node:v8';
import { InputError } from '../../errors.ts';
import { allocateUninit } from '../tensor.ts';
import { PROBE_BASE64, RELAXED_SIMD_BASE64, SIMD128_BASE64 } from './module.generated.ts';

/**
 * `simd128`: plain SIMD, the same bits on every engine and CPU. `relaxed-simd`: the matmul
 * micro-kernel multiplies and adds with `f32x4.relaxed_madd`, offered only where that is a fused
 * multiply-add (one rounding), so also the same bits wherever it is offered (Note [relaxed SIMD for
 * every process]).
 */
export type WasmVariant = 'simd128' | 'relaxed-simd';

// Note [relaxed SIMD for every process]
// The relaxed-SIMD variant's micro-kernel rounds once per multiply-add (FMA) instead of twice, and
// is faster (docs/measurements.md), but Node 20's V8 keeps relaxed SIMD behind
// `--experimental-wasm-relaxed-simd`, which nobody passes. V8 reads its wasm feature flags when a
// module is validated or compiled, not when an isolate starts, and the flags are the process's. So
// the first thread that loads these kernels sets the flag with v8.setFlagsFromString (only when a
// tiny relaxed-SIMD probe does not validate already), and from then on every thread of the process,
// workers started before or after, validates and compiles relaxed SIMD. Checked on Node 20.20: the
// probe fails before the call and validates after, in the main thread and in workers.
// The probe also settles what `relaxed_madd` computes: the spec lets an engine round once or twice.
// With a = 1 + 2^-12, a * a - (1 + 2^-11) is 2^-24 fused and 0 rounded twice. The variant is offered
// only where it is fused: a fused multiply-add is exactly rounded, so it gives the same bits on every
// CPU and engine that offers it (V8's baseline and optimizing tiers agree: checked with
// --liftoff-only and --no-liftoff), and unfused it would compute simd128's bits anyway.
// BACKFLOW_WASM_RELAXED=0 keeps a process on simd128 and leaves the V8 flags alone. Which kernels a
// process runs is decided once, on import (default-kernels.ts); every thread decides the same (same
// flags, same environment), and a host is moreover told the coordinator's choice in its HostInit and
// switches to it (selectKernels), so node processes on other machines compute what the
// coordinator's reference engine computes.

/** The part of the WebAssembly API used here (lib es2023 declares none of it). */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
}

interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/** The module's exports: byte offsets into `memory`, element counts and float32 element strides. */
export interface WasmExports {
  readonly memory: WasmMemory;
  // biome-ignore format: one argument per line reads worse
  gemm(a: number, ai: number, ap: number, b: number, bp: number, bj: number, c: number, m: number, n: number, k: number,
    cpad: number, packA: number, packB: number, mc: number, kc: number, nc: number, mr: number): void;
  neg(x: number, o: number, n: number): void;
  abs(x: number, o: number, n: number): void;
  square(x: number, o: number, n: number): void;
  relu(x: number, o: number, n: number): void;
  erf(x: number, o: number, n: number): void;
  exp(x: number, o: number, n: number): void;
  gelu(x: number, o: number, n: number): void;
  geluGrad(x: number, o: number, n: number): void;
  leakyRelu(x: number, o: number, n: number, slope: number): void;
  // biome-ignore format: one argument per line reads worse
  binary(op: number, a: number, ia: number, sa: number, b: number, ib: number, sb: number, o: number, rows: number,
    cols: number): void;
  sumRows(x: number, o: number, rows: number, len: number): void;
  sumSquares(x: number, n: number, o: number): void;
  sumCols(x: number, o: number, rows: number, cols: number, acc: number): void;
  maxRows(x: number, o: number, rows: number, len: number): void;
  maxCols(x: number, o: number, rows: number, cols: number): void;
  softmax(x: number, o: number, rows: number, len: number): void;
  logSoftmaxSums(x: number, o: number, rows: number, len: number, maxes: number, sums: number): void;
  logSoftmaxFinish(x: number, o: number, rows: number, len: number, maxes: number, logSums: number): void;
  // The kernels over image windows (window.wat); strides and steps in bytes.
  // biome-ignore format: one argument per line reads worse
  patchBases(out: number, start: number, m: number, count: number, oh: number, ow: number, imageStep: number,
    rowStep: number, colStep: number): void;
  padImage(
    src: number,
    dst: number,
    n: number,
    h: number,
    w: number,
    c: number,
    ph: number,
    pw: number,
  ): void;
  // biome-ignore format: one argument per line reads worse
  conv2d(bases: number, m: number, w: number, n: number, pb: number, c: number, kh: number, run: number,
    rowStep: number): void;
  // biome-ignore format: one argument per line reads worse
  conv2dInputGrad(g: number, m: number, f: number, w: number, k: number, pb: number, tile: number, bases: number,
    acc: number, accBytes: number, kh: number, run: number, rowStep: number): void;
  unpadImage(
    src: number,
    dst: number,
    n: number,
    h: number,
    w: number,
    c: number,
    ph: number,
    pw: number,
  ): void;
  // biome-ignore format: one argument per line reads worse
  maxPool(x: number, o: number, n: number, h: number, w: number, c: number, oh: number, ow: number, kh: number,
    kw: number, sh: number, sw: number, ph: number, pw: number): void;
  // biome-ignore format: one argument per line reads worse
  maxPoolGrad(x: number, g: number, o: number, oBytes: number, n: number, h: number, w: number, c: number,
    oh: number, ow: number, kh: number, kw: number, sh: number, sw: number, ph: number, pw: number): void;
  maxPool2x2(x: number, o: number, n: number, h: number, w: number, c: number, oh: number, ow: number): void;
  // biome-ignore format: one argument per line reads worse
  maxPool2x2Grad(x: number, g: number, o: number, oBytes: number, n: number, h: number, w: number, c: number,
    oh: number, ow: number): void;
  // biome-ignore format: one argument per line reads worse
  conv2dWeightGrad(bases: number, m: number, chunk: number, offsets: number, k: number, g: number, n: number,
    c: number): void;
}

const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;

const BASE64: Record<WasmVariant, string> = { simd128: SIMD128_BASE64, 'relaxed-simd': RELAXED_SIMD_BASE64 };

function moduleBytes(variant: WasmVariant): Uint8Array {
  return new Uint8Array(Buffer.from(BASE64[variant], 'base64'));
}

function validates(bytes: Uint8Array): boolean {
  try {
    return api?.validate(bytes) === true;
  } catch {
    return false;
  }
}

/**
 * BACKFLOW_WASM_RELAXED: '0' keeps this process on the simd128 kernels (reproducible against machines
 * without relaxed SIMD), unset, '' or '1' allows the relaxed-SIMD ones; anything else is an InputError.
 */
export function relaxedAllowed(): boolean {
  const v = process.env['BACKFLOW_WASM_RELAXED'];
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new InputError(`BACKFLOW_WASM_RELAXED: expected '0' or '1', found '${v}'`, {
    option: 'BACKFLOW_WASM_RELAXED',
    expected: "'0' (simd128 kernels only) or '1' (relaxed SIMD where it fuses)",
    found: v,
  });
}

/** Turns V8's relaxed SIMD on where the engine keeps it behind a flag (Note [relaxed SIMD for every process]). */
function enableRelaxedSimd(probe: Uint8Array): boolean {
  if (validates(probe)) return true;
  try {
    setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    return false;
  }
  return validates(probe);
}

/** Whether `f32x4.relaxed_madd` rounds once here: 2^-24 fused, 0 rounded twice (the Note). */
function maddFuses(probe: Uint8Array): boolean {
  try {
    const { madd } = new api!.Instance(new api!.Module(probe), {}).exports as {
      madd(a: number, b: number, c: number): number;
    };
    const a = 1 + 2 ** -12;
    return madd(a, a, -(1 + 2 ** -11)) === 2 ** -24;
  } catch {
    return false;
  }
}

let supported: WasmVariant[] | null = null;

/**
 * The variants this process runs, best first: simd128 where the module validates, and relaxed-simd
 * before it where relaxed SIMD is allowed (BACKFLOW_WASM_RELAXED), validates once its V8 flag is on,
 * and fuses (Note [relaxed SIMD for every process]). Decided once per thread; every thread of a
 * process gets the same list.
 */
export function wasmVariants(): readonly WasmVariant[] {
  if (supported === null) {
    const list: WasmVariant[] = [];
    const probe = new Uint8Array(Buffer.from(PROBE_BASE64, 'base64'));
    if (
      api !== undefined &&
      relaxedAllowed() &&
      enableRelaxedSimd(probe) &&
      maddFuses(probe) &&
      validates(moduleBytes('relaxed-simd'))
    )
      list.push('relaxed-simd');
    if (validates(moduleBytes('simd128'))) list.push('simd128');
    supported = list;
  }
  return supported;
}

/** Offsets stay below 2 GiB so that they are positive as int32 and unsigned compares never wrap. */
const MAX_BYTES = 2 ** 31 - 2 ** 16;
const PAGE = 2 ** 16;
/** Regions start on cache lines; vector loops read and write up to 12 bytes past a region's end. */
const ALIGN = 64;

/** One instance and its linear memory, which grows as calls need and never shrinks. */
export class WasmArena {
  readonly variant: WasmVariant;
  readonly exports: WasmExports;

  constructor(variant: WasmVariant) {
    if (api === undefined) throw new Error('wasm kernels: WebAssembly is not available');
    this.variant = variant;
    const instance = new api.Instance(new api.Module(moduleBytes(variant)), {});
    this.exports = instance.exports as WasmExports;
  }

  /**
   * Lays out regions of the given byte sizes one after another (offset 0 stays unused) and grows the
   * memory to hold them. Returns their offsets, or null when the memory cannot grow that far (the
   * caller then falls back to the TypeScript kernels). Earlier offsets and views are invalid after it.
   */
  layout(...sizes: number[]): number[] | null {
    const offsets: number[] = [];
    let top = ALIGN;
    for (const size of sizes) {
      offsets.push(top);
      top += Math.ceil(size / ALIGN) * ALIGN + ALIGN;
    }
    if (top > MAX_BYTES) return null;
    const have = this.exports.memory.buffer.byteLength;
    if (top > have) {
      try {
        this.exports.memory.grow(Math.ceil((top - have) / PAGE));
      } catch {
        return null;
      }
    }
    return offsets;
  }

  /** A view of `length` float32 at byte `offset` (valid until the memory grows). */
  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.exports.memory.buffer, offset, length);
  }

  /** A view of `length` int32 at byte `offset` (valid until the memory grows). */
  i32(offset: number, length: number): Int32Array {
    return new Int32Array(this.exports.memory.buffer, offset, length);
  }

  f64(offset: number, length: number): Float64Array {
    return new Float64Array(this.exports.memory.buffer, offset, length);
  }

  /** A fresh, owned copy of `length` float32 at `offset` (Note [owned storage]). */
  copyOut(offset: number, length: number): Float32Array<ArrayBuffer> {
    // Uninit: set writes all `length` elements. From the thread's pool, if any (Note [storage pool]).
    const out = allocateUninit('float32', length) as Float32Array<ArrayBuffer>;
    out.set(this.f32(offset, length));
    return out;
  }
}

const arenas = new Map<WasmVariant, WasmArena>();

/** This thread's instance of a variant, compiled on first use; throws when the engine lacks it. */
export function wasmArena(variant: WasmVariant): WasmArena {
  let arena = arenas.get(variant);
  if (arena === undefined) {
    if (!wasmVariants().includes(variant)) {
      throw new Error(`wasm kernels: this engine does not support ${variant}`);
    }
    arena = new WasmArena(variant);
    arenas.set(variant, arena);
  }
  return arena;
}
