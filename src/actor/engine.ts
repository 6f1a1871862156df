import type { Bindings } from '../autodiff/forward.ts';
import { computeNode } from '../autodiff/forward.ts';
import { InputError } from '../errors.ts';
import { label, type Node } from '../graph/graph.ts';
import { EagerOps } from '../ops/eager.ts';
import type { OpDef, RunContext } from '../ops/op.ts';
import type { Ops } from '../ops/ops.ts';
import { sumOfSquares } from '../optim/spec.ts';
import { type MarkedStorage, SHARED_MARK } from '../tensor/pool.ts';
import type { ConcreteShape } from '../tensor/shape.ts';
import { cast, type DType, type Storage, Tensor, zeros } from '../tensor/tensor.ts';
import { ParamUpdates, type Updates } from './param-updates.ts';

/**
 * What a host computes with. The host's logic (readiness, counting, sums, routing) is the same
 * whatever the values are: real tensors on a worker, or shapes only in the simulator.
 */
export interface ValueEngine<T> {
  /** The ops VJPs and gradient sums run on. */
  readonly ops: Ops<T>;
  /** `run`: the step and shard (Note [run context]); `def`: the node's op, when the caller has looked it up already. */
  forward(node: Node, args: readonly T[], bindings: Bindings, run: RunContext, def?: OpDef): T;
  /** A copy that owns fresh storage. */
  copy(value: T): T;
  /** Marks a value's storage as still referenced by this host (so it is never given away). */
  share(value: T): void;
  isShared(value: T): boolean;
  sameStorage(a: T, b: T): boolean;
  /** The number a scalar value holds (a loss). */
  item(value: T): number;
  bytes(value: T): number;
  /** The storage a value holds, for the step arena (Note [step arena]); null where values hold no numbers. */
  storage(value: T): Storage | null;
  zeros(shape: ConcreteShape, dtype: DType): T;
  /** A const node's value. */
  constant(node: Node): T;
  /** A closed gradient's sum of squares (Note [global norm order]); NaN where values hold no numbers. */
  sumOfSquares(value: T): number;
  /**
   * The optimizer of the parameters a host owns (`nameOf`: a parameter's name, for errors and
   * checkpoints). Absent where values hold no numbers: such a host takes no optimizer.
   */
  updates?(worker: number, nameOf: (id: number) => string): Updates<T>;
  /** False when a value holds a NaN or an infinity (anomaly mode); absent where values hold no numbers. */
  isFinite?(value: T): boolean;
  /**
   * For engines whose values hold no numbers: a node's VJP contributions without running the VJP
   * (Note [contributions without numbers]). Absent: the host runs the op's VJP on `ops`.
   */
  contributions?(node: Node, needs: readonly boolean[], bindings: Bindings): (T | null)[];
}

// Note [contributions without numbers]
// The contribution a VJP sends to input s of a node always has input s's shape and dtype: the engine
// sums a broadcast cotangent back to it (`runVjp`), and the real engine checks it. An engine that
// tracks only shapes (the simulator) therefore knows every contribution of a backward without
// running the op's VJP, which was most of the simulator's work. What stays the same: which inputs
// get one (`needs`), how many bytes each carries, and everything the host does with them.

/**
 * Real tensors. A storage mark is a property on the typed array, not a set entry: this is a hot path,
 * and the mark must follow the storage, because a reshape shares its input's storage; the pool clears
 * it when the storage is recycled (Note [storage marks] in src/tensor/pool.ts).
 */
export const tensorEngine: ValueEngine<Tensor> = {
  ops: new EagerOps(),
  forward: computeNode,
  copy: (t) => cast(t),
  share: (t) => {
    (t.data as MarkedStorage)[SHARED_MARK] = true;
  },
  isShared: (t) => (t.data as MarkedStorage)[SHARED_MARK] === true,
  sameStorage: (a, b) => a.data === b.data,
  item: (t) => t.data[0]!,
  bytes: (t) => t.data.byteLength,
  storage: (t) => t.data,
  zeros: (shape, dtype) => zeros(shape, dtype),
  constant: (node) => {
    const value = node.attrs.value;
    if (value instanceof Tensor) return value;
    throw new InputError(`${label(node)}: a const needs attrs.value, a Tensor`, { node: label(node) });
  },
  sumOfSquares,
  updates: (worker, nameOf) => new ParamUpdates(worker, nameOf),
  isFinite: (t) => {
    const d = t.data;
    // x - x is 0 for finite x and NaN for NaN and the infinities.
    for (let i = 0; i < d.length; i++) if (d[i]! - d[i]! !== 0) return false;
    return true;
  },
};
