// The types a host's shell, the runtime and the simulator see: messages, effects, tasks, counters and
// the diagnostics of a stuck step. Types only; the logic is in host.ts and the modules it is made of.
import type { FlowSettings } from '../partition/channels.ts';
import type { StoragePool } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ValueEngine } from './engine.ts';
import type { FailpointAction } from './failpoint.ts';
import type { ShardTables } from './kept-source.ts';
import type { Credit, DataMessage, LossReport, Report } from './messages.ts';
import type { NodeActor } from './node-actor.ts';
import type { TaskPhase } from './task-queue.ts';

export type Message<T = Tensor> = DataMessage<T>;

/** What a host asks its shell to do: the only way its work leaves it. */
export type HostEffect<T = Tensor> =
  | { readonly kind: 'send'; readonly worker: number; readonly message: Message<T> }
  | { readonly kind: 'report'; readonly report: Report<T> }
  /** Flow control: the activations of a stage were consumed here (Note [activation credits]). */
  | { readonly kind: 'credit'; readonly worker: number; readonly credit: Credit }
  /** A shard's loss, for another host that applies the update itself (Note [local update]). */
  | { readonly kind: 'loss'; readonly worker: number; readonly loss: LossReport }
  | { readonly kind: 'failpoint'; readonly action: FailpointAction; readonly task: TaskInfo };

export interface TaskInfo {
  readonly phase: TaskPhase;
  readonly node: number;
  readonly stage: number;
  readonly replica: number;
  readonly mb: number;
}

export interface Task<T> extends TaskInfo {
  readonly actor: NodeActor<T>;
  /** The fed value, for an input node's forward. */
  readonly value?: T;
}

/**
 * One host's (worker's) counters, as `Runtime.stats()` reports them per worker: work done,
 * messages, and the tensor bytes it holds and moves.
 */
export interface HostStats {
  /** Tasks (a node's forward or backward for one microbatch and replica) run since the host started. */
  tasks: number;
  /** Messages delivered to actors on this same host, by reference. */
  localMessages: number;
  /** Messages sent to other hosts. */
  remoteMessages: number;
  /** Tensors copied before leaving because this host still referenced them (the others are transferred). */
  copies: number;
  /** Messages dropped as stale: of an earlier step, or a duplicate update. */
  dropped: number;
  /** Bytes held for backwards right now. */
  keptBytes: number;
  /** The peak of `keptBytes` in the step. */
  peakKeptBytes: number;
  /**
   * Bytes of activations from other workers not consumed yet (Note [activation credits]), and their
   * peak in the step.
   */
  queuedBytes: number;
  /** The step's peak of `queuedBytes`. */
  peakQueuedBytes: number;
  /**
   * Tensor bytes this host holds by its books (Note [memory budget]): parameters held and read,
   * their gradients and optimizer state, kept and queued values; and the step's peak of these plus
   * the output of the task about to run, which the budget bounds.
   */
  liveBytes: number;
  /** The step's peak of `liveBytes`, with the output of the task about to run. */
  peakLiveBytes: number;
  /** Bytes of the parameters this host owns, and of their optimizer state. */
  paramBytes: number;
  /** Bytes of the owned parameters' optimizer state. */
  optimizerBytes: number;
  /** Tensor bytes this host sent to other hosts in the current step. */
  sentBytes: number;
  /** Tensor bytes received from other hosts in the current step. */
  receivedBytes: number;
  /**
   * Allocations the thread's storage pool (Note [storage pool]) served since the host started (this
   * and the three below are zero without a pool).
   */
  poolHits: number;
  /** Allocations the storage pool could not serve, since the host started. */
  poolMisses: number;
  /** Bytes the storage pool holds now. */
  pooledBytes: number;
  /** Bytes given back to the storage pool since the host started. */
  recycledBytes: number;
}

export interface WaitingEntry {
  node: string;
  replica: number;
  mb: number;
  waitingFor: 'inputs' | 'its feed' | 'parameters' | 'gradients' | 'parameter gradients' | 'schedule';
  have: number;
  need: number;
  /** The nodes that still owe something. */
  from: string[];
}

/**
 * A host's last constructor argument. Without an engine its values are real tensors, so a host of
 * any other values must be given the engine that computes with them.
 */
export type HostOptions<T> = [T] extends [Tensor]
  ? [options?: HostSettings & { readonly engine?: ValueEngine<T> }]
  : [options: HostSettings & { readonly engine: ValueEngine<T> }];

/** A runtime's limits, the same on every host (Note [memory budget], Note [activation credits]). */
export interface HostLimits {
  /** Live tensor bytes a host may hold; Infinity: no limit. */
  readonly memoryBytes: number;
  /** Credits per channel, or null: none. */
  readonly flow: FlowSettings | null;
}

export interface HostSettings {
  /** Default: no limit, no credits (the simulator's hosts). */
  readonly limits?: HostLimits;
  /**
   * This thread's storage pool: storages go back to it when a step is over (Note [step arena] in
   * step-arena.ts). Real tensors only, and only a host that is alone on its thread (it gives back
   * what the thread made).
   */
  readonly pool?: StoragePool | null;
  /** The step's shard table, built once per step for the hosts given the same one (default: one of its own). */
  readonly shards?: ShardTables;
}
