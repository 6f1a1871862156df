import { bytesPerElement, type DType, type Storage } from './tensor.ts';

// Note [storage pool]
// A worker recycles the storages of its tensors instead of leaving them to the garbage collector: a
// fresh large ArrayBuffer costs its allocation, the page faults of first touch and, later, a
// collection and an unmap, and a worker that sends big activations makes one per message. Storages
// are kept per shape class, (dtype, element count) exactly: a tensor owns its whole buffer (Note
// [owned storage]), so a bigger buffer cannot stand in for a smaller one. Only storages of at least
// `minBytes` are pooled (small typed arrays are cheap and may live on the V8 heap). The pool holds at
// most `maxBytes`; past that, the least recently used classes give up storages first. When a step
// starts, each class also keeps no more storages than the last step took from it: a class the thread
// receives but never makes (a feed from the coordinator) would otherwise grow by one storage a step
// until the bound.
//
// Lifetime is step-scoped (Note [step arena] in src/actor/step-arena.ts): every pooled-size storage the
// thread allocates, and every one its host receives for the current step, is recorded in the arena;
// when the step is over the host computes what it still holds and `recycle` gives everything else
// back. A recorded storage that was transferred away is detached (byteLength 0) and is forgotten.
// In poison mode a storage given back is filled with NaN, so a use after recycling shows as NaN.
//
// A 16 MiB buffer passed between two workers and written whole at each hop, as a kernel writes its
// output, costs 3.1-3.4x as much fresh as recycled (`npm run bench -- pool`). Below 16 KiB recycling
// saves less than recording and recycling a storage costs: hence POOL_MIN_BYTES (figures:
// docs/measurements.md).

// Note [storage marks]
// A storage may carry marks for as long as it is alive: the host's "shared" mark (Note [owned
// contributions] in src/actor/router.ts) says that whoever gives its tensor away must copy it. A mark
// is about one life of the storage, so the pool clears it when the storage comes back: recycled
// into another tensor (a parameter's gradient in the class of an activation's cotangent) it would
// otherwise make that tensor be copied for nothing (a 131 KB gradient a step for the MNIST MLP).

// Note [replenishing]
// A storage the thread transferred away (a gradient reported to the coordinator, an activation sent
// to another worker) never comes back: the next step's allocation of its class misses and makes a
// fresh one, on the step's critical path (two of the MNIST MLP's weight gradients a step, 0.9 MB:
// about 0.15 ms of a 4 ms step). So the trim at a step's start also counts, per class, how many
// storages the last step took and did not give back, and once its host has no ready task the shell
// has the pool `replenish`: a fresh storage of each such class for each one missing goes to the free
// list while the thread would otherwise wait, for whatever it takes next (on one worker, the MLP's
// host idles only after its reports: the next step). The count is of the last step's
// flow, not of what is free now (a replenished storage taken and sent away is missing again). A class
// whose storages leave while as many of its shape arrive and are given back (a data-parallel worker
// sends its parameters' values and receives gradients of the same shapes) owes nothing. Within the
// pool's bound and the host's budget; a byte wire gives written storages back (Note [tensors beside
// the frame]), so they never count as missing.

/** The shared mark of a storage (Note [storage marks]): a property on the typed array, true when set. */
export const SHARED_MARK: unique symbol = Symbol('shared');
export type MarkedStorage = Storage & { [SHARED_MARK]?: boolean };

/** Pooled storages start here: the envelope's transfer threshold (Note [columnar envelope]). */
export const POOL_MIN_BYTES = 16 * 1024;
export const POOL_MAX_BYTES = 256 * 1024 * 1024;

/**
 * A worker thread's storage pool (Note [storage pool]): how much it may hold, from what size, and
 * whether it poisons what it gets back.
 */
export interface PoolOptions {
  /** Bytes the pool may hold (default 256 MiB). */
  maxBytes?: number;
  /** Storages smaller than this are never pooled (default 16 KiB). */
  minBytes?: number;
  /** Fill storages with NaN when they are given back (tests: a use after recycling turns into NaN). */
  poison?: boolean;
}

export interface PoolStats {
  /** Pooled-size allocations served from the pool, and the ones that made a fresh storage. */
  hits: number;
  misses: number;
  /** Bytes held by the pool now. */
  pooledBytes: number;
  /** Bytes given back to the pool so far (evicted or not). */
  recycledBytes: number;
}

/** The key of a shape class: element count, and the dtype in the low bit. */
const classKey = (dtype: DType, size: number) => size * 2 + (dtype === 'float32' ? 0 : 1);
/** The dtype and element count of a class key (the inverse of `classKey`). */
const classOf = (key: number): [DType, number] => [
  key % 2 === 0 ? 'float32' : 'float64',
  Math.floor(key / 2),
];

/** A fresh (zero-filled) storage of `size` elements of `dtype`. */
const fresh = (dtype: DType, size: number): Storage =>
  dtype === 'float32' ? new Float32Array(size) : new Float64Array(size);

/** A thread's storage pool and its arena (Note [storage pool]). One host per pool. */
export class StoragePool implements PoolStats {
  readonly maxBytes: number;
  readonly minBytes: number;
  readonly poison: boolean;
  hits = 0;
  misses = 0;
  pooledBytes = 0;
  recycledBytes = 0;
  /** Free storages by class; Map order is recency of use, least recent first. */
  private readonly classes = new Map<number, Storage[]>();
  /** Storages recorded since they were last given back, with their bytes (one storage is never given twice). */
  private readonly arena = new Map<Storage, number>();
  /** Bytes of the storages in the arena (a transferred one counts until a recycle finds it detached). */
  arenaBytes = 0;
  /** Storages taken per class since the last trim (hits and misses). */
  private readonly demand = new Map<number, number>();
  /** Storages given back per class since the last trim. */
  private readonly returned = new Map<number, number>();
  /** Storages per class the last step took and did not give back, found at the trim (Note [replenishing]). */
  private readonly deficit = new Map<number, number>();

  constructor(options: PoolOptions = {}) {
    this.maxBytes = options.maxBytes ?? POOL_MAX_BYTES;
    this.minBytes = options.minBytes ?? POOL_MIN_BYTES;
    this.poison = options.poison ?? false;
  }

  /** Whether storages of `size` elements of `dtype` are pooled. */
  pools(dtype: DType, size: number): boolean {
    return size * (dtype === 'float32' ? 4 : 8) >= this.minBytes;
  }

  /**
   * A storage of a pooled size, recorded in the arena: a recycled one (zero-filled when `zeroed`, else
   * with whatever it held) or a fresh one.
   */
  allocate(dtype: DType, size: number, zeroed: boolean): Storage {
    const key = classKey(dtype, size);
    this.demand.set(key, (this.demand.get(key) ?? 0) + 1);
    const free = this.classes.get(key);
    let s: Storage;
    if (free !== undefined) {
      s = free.pop()!;
      this.pooledBytes -= s.byteLength;
      this.hits++;
      // Most recently used from now on (or gone, when empty).
      this.classes.delete(key);
      if (free.length > 0) this.classes.set(key, free);
      if (zeroed) s.fill(0);
    } else {
      s = fresh(dtype, size);
      this.misses++;
    }
    this.arena.set(s, s.byteLength);
    this.arenaBytes += s.byteLength;
    return s;
  }

  /** Records a storage the thread did not allocate (a received tensor's) in the arena. */
  track(s: Storage): void {
    if (s.byteLength < this.minBytes || this.arena.has(s)) return;
    this.arena.set(s, s.byteLength);
    this.arenaBytes += s.byteLength;
  }

  /**
   * The buffer of a free float32 storage of `bytes`, not recorded, or null (none free, or not a pooled
   * size): where a byte wire puts a tensor that arrives beside its frame, which the host records on
   * receipt (Note [tensors beside the frame] in src/protocol/frame-cutter.ts).
   */
  takeBuffer(bytes: number): ArrayBuffer | null {
    if (bytes % 4 !== 0 || bytes < this.minBytes) return null;
    const key = classKey('float32', bytes / 4);
    this.demand.set(key, (this.demand.get(key) ?? 0) + 1);
    const free = this.classes.get(key);
    if (free === undefined) {
      this.misses++;
      return null;
    }
    const s = free.pop()!;
    this.pooledBytes -= s.byteLength;
    this.hits++;
    this.classes.delete(key);
    if (free.length > 0) this.classes.set(key, free);
    return s.buffer as ArrayBuffer;
  }

  /**
   * Takes a buffer that left the arena back as a free float32 storage: a tensor's, once a byte wire
   * has written it to its socket (Note [tensors beside the frame]). Nothing else may hold it.
   */
  giveBuffer(b: ArrayBuffer): void {
    if (b.byteLength % 4 === 0 && b.byteLength >= this.minBytes) this.give(new Float32Array(b));
  }

  /** Bytes of storage the pool keeps alive: its free storages and those of the arena. */
  get retainedBytes(): number {
    return this.pooledBytes + this.arenaBytes;
  }

  /** Storages recorded and not yet given back. */
  get arenaSize(): number {
    return this.arena.size;
  }

  /**
   * The step is over: every recorded storage goes back to the pool, except detached ones (forgotten)
   * and those whose buffer is in `live` (kept recorded, for the next time). With `trim` (a step
   * starts), each class then keeps at most as many storages as were taken from it since the last trim,
   * and the pool owes what was taken and not given back (Note [replenishing]).
   * Returns how many went back.
   */
  recycle(live: ReadonlySet<ArrayBufferLike>, trim = false): number {
    let given = 0;
    for (const [s, bytes] of this.arena) {
      if (s.byteLength === 0) {
        this.arena.delete(s);
        this.arenaBytes -= bytes;
      } else if (!live.has(s.buffer)) {
        this.arena.delete(s);
        this.arenaBytes -= bytes;
        this.give(s);
        given++;
      }
    }
    if (trim) {
      this.deficit.clear();
      for (const [key, taken] of this.demand) {
        const short = taken - (this.returned.get(key) ?? 0);
        if (short > 0) this.deficit.set(key, short);
      }
      for (const [key, free] of this.classes) {
        const keep = this.demand.get(key) ?? 0;
        while (free.length > keep) this.pooledBytes -= free.pop()!.byteLength;
        if (free.length === 0) this.classes.delete(key);
      }
      this.demand.clear();
      this.returned.clear();
    }
    return given;
  }

  /** Forgets every recorded storage without giving it back: they are someone else's now. */
  forget(): void {
    this.arena.clear();
    this.arenaBytes = 0;
  }

  /**
   * Note [replenishing]: makes, as fresh storages in the free lists, what the last trim found the
   * step before had taken and not given back, while the pool's bound and `limit` (bytes the pool may
   * retain) allow; then owes nothing until the next trim. Returns how many.
   */
  replenish(limit = Number.POSITIVE_INFINITY): number {
    let made = 0;
    for (const [key, short] of this.deficit) {
      const [dtype, size] = classOf(key);
      const bytes = size * bytesPerElement(dtype);
      for (let i = 0; i < short; i++) {
        if (this.pooledBytes + bytes > this.maxBytes || this.retainedBytes + bytes > limit) break;
        const s = fresh(dtype, size);
        if (this.poison) s.fill(Number.NaN);
        this.file(key, s);
        made++;
      }
    }
    this.deficit.clear();
    return made;
  }

  /** How many storages `replenish` would make now (Note [replenishing]): the last trim's deficit, until made. */
  get owed(): number {
    let n = 0;
    for (const short of this.deficit.values()) n += short;
    return n;
  }

  private give(s: Storage): void {
    const bytes = s.byteLength;
    // Larger than the whole pool: refused, left to the collector.
    if (bytes > this.maxBytes) return;
    this.recycledBytes += bytes;
    while (this.pooledBytes + bytes > this.maxBytes) this.evict();
    if (this.poison) s.fill(Number.NaN);
    // Note [storage marks]: a mark of the storage's last life goes.
    if ((s as MarkedStorage)[SHARED_MARK] === true) (s as MarkedStorage)[SHARED_MARK] = false;
    const key = classKey(s instanceof Float32Array ? 'float32' : 'float64', s.length);
    this.returned.set(key, (this.returned.get(key) ?? 0) + 1);
    this.file(key, s);
  }

  /** A free storage into its class's list, the class now the most recently used. */
  private file(key: number, s: Storage): void {
    const free = this.classes.get(key) ?? [];
    this.classes.delete(key);
    this.classes.set(key, free);
    free.push(s);
    this.pooledBytes += s.byteLength;
  }

  /** Lets go of free storages, least recently used classes first, until at most `maxFree` bytes are left. */
  shrink(maxFree: number): void {
    while (this.pooledBytes > maxFree && this.classes.size > 0) this.evict();
  }

  /** Drops one storage of the least recently used class. */
  private evict(): void {
    const [key, free] = this.classes.entries().next().value!;
    this.pooledBytes -= free.pop()!.byteLength;
    if (free.length === 0) this.classes.delete(key);
  }

  stats(): PoolStats {
    const { hits, misses, pooledBytes, recycledBytes } = this;
    return { hits, misses, pooledBytes, recycledBytes };
  }
}

/** The buffers of live values, for `recycle`: only values of a pooled size (a small array's buffer is never read). */
export class LiveBuffers {
  readonly buffers = new Set<ArrayBufferLike>();
  constructor(private readonly minBytes: number) {}

  add(s: Storage | undefined | null): void {
    if (s != null && s.byteLength >= this.minBytes) this.buffers.add(s.buffer);
  }
}

let installed: StoragePool | null = null;

/**
 * Makes `pool` this thread's pool (null: none, every allocation fresh). A host's shell installs its
 * pool around its work; in the main thread the engine installs its call pool around each call (Note
 * [call storages] in src/autodiff/call-pool.ts).
 */
export function installPool(pool: StoragePool | null): void {
  installed = pool;
}

export function installedPool(): StoragePool | null {
  return installed;
}
