/**
 * What the machine was like while a benchmark ran: the run prints a `machine` line before each suite
 * and after the last, with two probes and the 1-minute load average.
 *
 * - `slice_ms`: a fixed scalar loop (no allocation, no memory traffic) timed in 40 slices of about
 *   5 ms, after a few untimed ones for the JIT: median, min and max, and `slice_spread` (max over
 *   min). Near 1 when the thread got a whole core throughout.
 * - `fresh_page_us`: what touching a page of fresh memory costs, per 4 KiB page: 8 MiB of new
 *   WebAssembly memory (reserved by its own mapping, never recycled memory) written once a page, the
 *   median of 5. Tenths of a microsecond on bare metal; on the virtual machines this project was
 *   measured on, about 10 us, since the guest hands freed memory back to its host. Wherever a figure
 *   depends on fresh buffers (the main thread allocates every tensor fresh; the workers recycle theirs)
 *   this cost is in it.
 *
 * A time that moved between two runs is a change of the code only if these held still.
 */
import { loadavg } from 'node:os';
import { type BenchResult, median, round, stats } from './harness.ts';

const SLICES = 40;
const WARM_SLICES = 10;
const SLICE_ITERATIONS = 4_000_000;
const PAGE = 4096;
/** Pages of each fresh-memory probe (8 MiB), and probes. */
const FRESH_PAGES = 2048;
const FRESH_PROBES = 5;

// Written by every slice, so that the loop is not optimized away.
let _sink = 0;

/** WebAssembly's Memory constructor (lib es2023 declares none of the API). */
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } };
  }
).WebAssembly.Memory;

/** One slice of the scalar loop, in ms. */
function slice(seed: number): number {
  const t0 = performance.now();
  let s = seed;
  for (let i = 0; i < SLICE_ITERATIONS; i++) s = (Math.imul(s, 1664525) + 1013904223 + i) | 0;
  _sink += s;
  return performance.now() - t0;
}

/** Microseconds a page to touch `FRESH_PAGES` pages of a new WebAssembly memory once each. */
export function freshPageUs(): number {
  const memory = new WasmMemory({ initial: (FRESH_PAGES * PAGE) / 65536 });
  const bytes = new Uint8Array(memory.buffer);
  const t0 = performance.now();
  for (let p = 0; p < FRESH_PAGES; p++) bytes[p * PAGE] = 1;
  return ((performance.now() - t0) * 1000) / FRESH_PAGES;
}

/** The machine line, `label` naming when it ran (e.g. 'before actors'). */
export function machineProbe(label: string): BenchResult {
  for (let k = 0; k < WARM_SLICES; k++) slice(k);
  const s = stats(Array.from({ length: SLICES }, (_, k) => slice(k)));
  const fresh = median(Array.from({ length: FRESH_PROBES }, freshPageUs));
  return {
    suite: 'machine',
    case: label,
    median_ms: round(s.median),
    min_ms: round(s.min),
    max_ms: round(s.max),
    runs: s.runs,
    slice_spread: round(s.max / s.min, 2),
    fresh_page_us: round(fresh, 2),
    load_1m: round(loadavg()[0]!, 2),
  };
}
