import type { DType, Storage } from '../tensor/tensor.ts';

// Note [feed storages]
// Every step the coordinator copies each shard's rows of each input out of the user's feeds, since
// the copy is what travels (the user keeps their tensors). A fresh copy a step is a fresh buffer a
// step: on the MNIST MLP 400 KB, zero-filled, then written, then left to the collector, which on the
// VMs this was measured on cost about half a millisecond of a 5 ms one-worker step (first touches of
// fresh pages and the collections the buffers bring on: docs/measurements.md). A cluster that never
// keeps what it is sent (a LinkedCluster: a link copies a tensor into its envelope or ring, or
// transfers it away, detaching it) leaves the copy free to write again once the step is over. So
// such a cluster offers its `feedStorage`: it keeps the last storage of each (shard, input) and
// hands it back for the same place in the next step while it is still attached and of the same size;
// one that was transferred away (its length now 0) is replaced by a fresh one. A link is done with
// what it was sent by the end of the turn that sent it (it flushes at the end of the turn; only a
// host holds messages back, its scalar reports: Note [report cadence] in host-shell.ts), and the
// runtime makes a step's copies only after the step before it has settled, in a later turn.

/** The coordinator's storages for feed shards (Note [feed storages]). */
export class FeedStorages {
  private readonly held: Storage[] = [];

  /** The storage for place `key`: the last one, when still attached and of this dtype and size, else a fresh one. */
  readonly take = (key: number, dtype: DType, size: number): Storage => {
    const last = this.held[key];
    if (
      last !== undefined &&
      last.length === size &&
      last instanceof (dtype === 'float32' ? Float32Array : Float64Array)
    )
      return last;
    const fresh = dtype === 'float32' ? new Float32Array(size) : new Float64Array(size);
    this.held[key] = fresh;
    return fresh;
  };
}
