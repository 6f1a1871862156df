// Columns handed to worker threads in shared memory, so that one copy serves every worker.

// Note [shared columns]
// A worker thread gets the packed graph (Note [packed graph]) and the plan's columns (Note [shipped
// plan]): some 65 MB of typed arrays on the million-node lane graph. By structured clone, each
// worker's init was serialized on the coordinator's thread, a copy per worker (0.3-0.6 s each on a
// loaded 2-core machine), and copied again as the worker read it. Copied once into
// SharedArrayBuffers instead, the columns cross to every worker without a copy: the message carries
// the shared memory itself. Nobody writes them after compile and packGraph made them (the plan's
// columns are read-only, like the graph), so sharing them is sharing read-only data; the worker checks
// them exactly as it checks cloned ones (unpackGraph, planFromColumns). The plan's large columns are
// made in shared memory by compile itself (Note [columns in shared memory]) and pass through as they
// are; only the small ones are copied here.

/** A typed array or DataView whose copy is of the same kind over a SharedArrayBuffer. */
type View = ArrayBufferView & { readonly constructor: new (buffer: SharedArrayBuffer) => ArrayBufferView };

/**
 * `value` with every typed array in it, in plain objects and arrays at any depth, replaced by a copy
 * in shared memory (Note [shared columns]). Everything else (numbers, strings, Maps) is kept as is.
 */
export function sharedColumns<T>(value: T): T {
  return share(value, 0) as T;
}

function share(v: unknown, depth: number): unknown {
  if (depth > 8 || v === null || typeof v !== 'object') return v;
  if (ArrayBuffer.isView(v)) {
    if (v instanceof DataView || v.buffer instanceof SharedArrayBuffer) return v;
    const copy = new (v as View).constructor(new SharedArrayBuffer(v.byteLength));
    new Uint8Array(copy.buffer).set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    return copy;
  }
  if (Array.isArray(v)) return v.map((x) => share(x, depth + 1));
  if (Object.getPrototypeOf(v) !== Object.prototype) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = share(x, depth + 1);
  return out;
}
