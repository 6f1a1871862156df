import type { LiveBuffers, StoragePool } from '../tensor/pool.ts';
import type { ValueEngine } from './engine.ts';
import type { HostStats } from './host-types.ts';

// Note [step arena]
// On a worker, the storages of a step's tensors go back to the thread's pool (Note [storage pool])
// when the step is over on this host: at the start of the next step (after `reset`, before anything
// of the new step is made or an early message is delivered) and right after its update. What goes
// back is what the pool's arena recorded (the thread's pooled-size allocations, and what this host
// was delivered for its current step), minus what is still live. The live set is computed then,
// from the owners, never from bookkeeping at creation: parameter values, optimizer states, kept
// gradients (`Updates.held`), what the actors still hold (constants, the parameters of other hosts
// in `fixed`, per-microbatch inputs, kept values, contributions) and what the parameter actors
// still sum, and messages kept for a later step (`Host.liveBuffers`). A storage that was
// transferred away is detached and forgotten. A live storage stays recorded and is looked at again
// the next time (a parameter value is given back once `setParams` replaces it). The shell must
// have sent what it queued before a recycle (a queued transfer is not detached yet): it flushes its
// links before `startStep` and `applyUpdate`. A storage is recorded when it is delivered, not when
// it is decoded: an envelope's later messages are decoded before its step start is handled, so the
// envelope reader must not take their storages from the pool's arena (it copies small tensors with
// `slice`, and a ring's tensors into free storages `takeBuffer` hands out unrecorded: Note [tensor
// ring] in src/protocol/ring.ts).
//
// Until the step is over, the arena keeps every storage of the step alive, the dead ones too: a
// 1F1B step would hold every microbatch's values, not the few in flight. So under memory pressure
// (the pool's storages past the host's budget, Note [memory budget]) the shell also flushes and
// `relieve`s mid-step, between tasks: the same recycle without the trim, then the pool lets go of
// free storages until the arena and the free ones fit the budget again. Mid-step, tasks waiting in
// the queue hold values too (an input's feed): `Host.liveBuffers` counts them.

const NOTHING_LIVE: ReadonlySet<ArrayBufferLike> = new Set();

/** A host's side of its thread's storage pool (Note [step arena]); does nothing without a pool. */
export class StepArena<T> {
  constructor(
    private readonly pool: StoragePool | null,
    private readonly engine: ValueEngine<T>,
  ) {}

  /** A value delivered for the current step: its storage is the step's to give back. */
  track(value: T): void {
    const pool = this.pool;
    if (pool === null) return;
    const storage = this.engine.storage(value);
    if (storage !== null) pool.track(storage);
  }

  /**
   * The step is over: gives its storages back to the pool, but those `live` finds still referenced.
   * `stepStarts`: the pool also trims its classes to the last step's demand.
   */
  recycle(stepStarts: boolean, live: (minBytes: number) => LiveBuffers): void {
    const pool = this.pool;
    if (pool === null) return;
    pool.recycle(pool.arenaSize === 0 ? NOTHING_LIVE : live(pool.minBytes).buffers, stepStarts);
  }

  /**
   * Memory pressure mid-step: gives the storages of dead values back (no trim), then keeps at most
   * what fits beside the arena within `limit` bytes of free storages.
   */
  relieve(limit: number, live: (minBytes: number) => LiveBuffers): void {
    const pool = this.pool;
    if (pool === null) return;
    pool.recycle(live(pool.minBytes).buffers, false);
    pool.shrink(Math.max(0, limit - pool.arenaBytes));
  }

  /** Copies the pool's counters into `counters` (zero without a pool). */
  count(counters: HostStats): void {
    const pool = this.pool;
    if (pool === null) return;
    counters.poolHits = pool.hits;
    counters.poolMisses = pool.misses;
    counters.pooledBytes = pool.pooledBytes;
    counters.recycledBytes = pool.recycledBytes;
  }
}
