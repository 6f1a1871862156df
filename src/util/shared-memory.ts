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

/** A typed-array class that can be made over a length or over a buffer. */
export interface ColumnKind<A extends Int32Array | Uint8Array | Float64Array> {
  new (length: number): A;
  new (buffer: SharedArrayBuffer): A;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * A `kind` of `length` zeros, over a SharedArrayBuffer if it is large (Note [columns in shared memory]):
 * `sharedColumn(Int32Array, n)`.
 */
export function sharedColumn<A extends Int32Array | Uint8Array | Float64Array>(
  kind: ColumnKind<A>,
  length: number,
): A {
  const bytes = length * kind.BYTES_PER_ELEMENT;
  return bytes < SHARED_FROM_BYTES ? new kind(length) : new kind(new SharedArrayBuffer(bytes));
}
