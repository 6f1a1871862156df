// Typed arrays over shared memory, for the columns a plan hands to worker threads.

// Note [columns in shared memory]
// A runtime on worker threads hands each worker the plan's columns (Note [shipped plan]) in shared
// memory (Note [shared columns]). Made as ordinary typed arrays, they were copied into
// SharedArrayBuffers as the first worker's init went out: on the million-node lane graph some 40 MB,
// 190 ms of the coordinator's part of the start on a machine where fresh memory costs most of a copy.
// compile and planGradient make those columns over SharedArrayBuffers in the first place, and the
// handoff passes them on as they are. A SharedArrayBuffer reads and writes like an ArrayBuffer; no
// code writes these columns after they are made, so sharing them shares read-only data. Columns
// under SHARED_FROM_BYTES stay ordinary and are copied: making a SharedArrayBuffer costs about 1 us
// against 0.03 for an ArrayBuffer, which a small graph's valueAndGrad would pay on every call.

/** The size from which a column is made in shared memory (Note [columns in shared memory]). */
export const SHARED_FROM_BYTES = 64 * 1024;

/** An Int32Array of `length` zeros, over a SharedArrayBuffer if it is large (Note [columns in shared memory]). */
export function sharedInt32Array(length: number): Int32Array {
  const bytes = length * Int32Array.BYTES_PER_ELEMENT;
  return bytes < SHARED_FROM_BYTES ? new Int32Array(length) : new Int32Array(new SharedArrayBuffer(bytes));
}

/** A Uint8Array of `length` zeros, over a SharedArrayBuffer if it is large (Note [columns in shared memory]). */
export function sharedUint8Array(length: number): Uint8Array {
  return length < SHARED_FROM_BYTES ? new Uint8Array(length) : new Uint8Array(new SharedArrayBuffer(length));
}

/** A Float64Array of `length` zeros, over a SharedArrayBuffer if it is large (Note [columns in shared memory]). */
export function sharedFloat64Array(length: number): Float64Array {
  const bytes = length * Float64Array.BYTES_PER_ELEMENT;
  return bytes < SHARED_FROM_BYTES
    ? new Float64Array(length)
    : new Float64Array(new SharedArrayBuffer(bytes));
}
