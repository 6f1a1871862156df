// Everything that crosses a data port, as types: the envelope, its message kinds, and how a tensor
// travels. The codec (codec.ts) is the only place that builds or checks these values.

import type { FailpointAction } from '../actor/failpoint.ts';
import type { TaskInfo } from '../actor/host.ts';
import type { Credit, DataMessage, LossReport, Report, StepStart, StepUpdate } from '../actor/messages.ts';
import type { DType } from '../tensor/tensor.ts';
import type { RingMark } from './ring.ts';

/** Bumped whenever a message kind or field changes; a receiver refuses any other version. */
export const PROTOCOL_VERSION = 8;

/** The `from` of envelopes the coordinator (main thread) sends. */
export const COORDINATOR = -1;

/**
 * A tensor on a port: its whole storage as an ArrayBuffer, transferred, never cloned
 * (Note [owned storage] in src/tensor/tensor.ts).
 */
export interface WireTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly buffer: ArrayBuffer;
}

/** Step metadata, first on the coordinator's port to a host before any of the step's data. */
export type StartMessage = { readonly kind: 'start' } & StepStart;

/** A step's update, on the coordinator's port to a host after the step's data and before the next start. */
export type UpdateMessage = { readonly kind: 'update' } & StepUpdate;

/**
 * What a host receives: from the coordinator (start, feed, update) or from another host (activation,
 * param, gradient, credit, and a shard's loss under Note [local update]).
 */
export type HostInput<T> = StartMessage | UpdateMessage | DataMessage<T> | Credit | LossReport;

/** A host reached a 'pause' failpoint and is about to block (tests kill the worker there). */
export interface FailpointNotice {
  readonly kind: 'failpoint';
  readonly action: FailpointAction;
  readonly task: TaskInfo;
}

/** What a host sends the coordinator. */
export type HostOutput<T> = Report<T> | FailpointNotice;

/** Every message kind on a data port. */
export type MessageKind = HostInput<unknown>['kind'] | HostOutput<unknown>['kind'];

/**
 * One batch of messages on one port, sent once per event-loop turn, in columns (Note [columnar
 * envelope] in batch.ts). `gen` is the cluster generation the sender was in (messages of an older
 * generation are dropped and counted); `from` is the sending worker, or COORDINATOR.
 */
export interface Envelope {
  readonly v: number;
  readonly gen: number;
  readonly from: number;
  /** Messages in the envelope: rows in `head`. */
  readonly count: number;
  /** One row per message: ROW_FIELDS integers, then the tensor's dimensions. */
  readonly head: Int32Array<ArrayBuffer>;
  /** The bytes of small tensors and of scalars, each at an offset that is a multiple of 8. */
  readonly payload: ArrayBuffer;
  /** Large tensors, each its own transferred buffer, in row order. */
  readonly buffers: readonly ArrayBuffer[];
  /** Messages that are not columns (step starts, failures, failpoint notices), in row order. */
  readonly objects: readonly unknown[];
  /** Large tensors sent through the link's ring instead (Note [tensor ring]); never on a byte wire. */
  readonly ring?: RingMark;
}

/** What a receiver checks integers against: the plan's sizes. */
export interface Limits {
  readonly nodes: number;
  readonly replicas: number;
  readonly workers: number;
}
