import { isMainThread } from 'node:worker_threads';
import { installedPool, installPool, type PoolOptions, type PoolStats, StoragePool } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';

// Note [call storages]
// A program's main thread has no host, and so had no storage pool: every kernel output of
// `valueAndGrad` and `evaluate` was a fresh typed array, left to the collector when the call ended.
// glibc gives freed memory of that size back to the kernel, so the next call's outputs land on fresh
// pages, and a fresh page costs 10-15 us on the VMs this was measured on: the MNIST MLP's
// `valueAndGrad` (batch 128) ran in phases of 7-9 ms a call with 230-480 page faults each, against
// 3.2 ms without them (docs/measurements.md). So the main thread has one pool for its engine calls,
// and a call is an arena of its own (Note [storage pool], Note [step arena]): while it runs the pool
// is installed, and when it returns, every pooled-size storage it made goes back to the pool except
// those of what it returns, which it forgets (they are the caller's from then on, and never come
// back). Each class then keeps at most what the call took from it: between calls the pool holds at
// most one call's working set. A call that throws forgets what it made (an error may hold a tensor).
// A call made inside another (an op's forward that runs `evaluate`) or while a host's pool is
// installed (a host in this thread) uses the pool installed, whose owner gives its storages back.
// Like a worker's kernels, an op may not keep a tensor it made past its call: its storage goes back.
//
// Other threads keep fresh storages: hosts have their own pools, and in plain worker threads of a
// program (two of them each running `valueAndGrad` on half a batch and trading gradients,
// test/bench/dp-floor.ts) the step was slower with the pool in 12 of 13 alternating runs, up to
// twice as slow, every part of it alike, for a reason not found; no worker-thread case measured faster.

let pool: StoragePool | null = null;
let options: PoolOptions = {};

/**
 * Runs an engine call in the main thread's call pool (Note [call storages]); `returned` names the
 * tensors the caller receives. Inside another call, with a pool installed, or off the main thread,
 * just runs it.
 */
export function withCallPool<R>(call: () => R, returned: (result: R) => Iterable<Tensor>): R {
  if (!isMainThread || installedPool() !== null) return call();
  const p = (pool ??= new StoragePool(options));
  installPool(p);
  let result: R;
  try {
    result = call();
  } catch (err) {
    p.forget();
    throw err;
  } finally {
    installPool(null);
  }
  const live = new Set<ArrayBufferLike>();
  for (const t of returned(result)) live.add(t.data.buffer);
  p.recycle(live, true);
  p.forget();
  return result;
}

/**
 * Replaces the main thread's call pool with a new one of these options (`poison`: tests, where a
 * storage used after it went back reads NaN). @internal
 */
export function configureCallPool(next: PoolOptions): void {
  options = { ...next };
  pool = null;
}

/** The counters of the main thread's call pool (zero before its first call). @internal */
export function callPoolStats(): PoolStats {
  return pool?.stats() ?? { hits: 0, misses: 0, pooledBytes: 0, recycledBytes: 0 };
}
