import type { Failpoint, FailpointAction } from '../actor/failpoint.ts';
import type { HostStats, Message, TaskInfo, WaitingEntry } from '../actor/host.ts';
import type { HostAction } from '../actor/task-queue.ts';
import type { Report, StepStart } from '../actor/messages.ts';
import type { WorkerError } from '../errors.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** What a cluster tells the coordinator. */
export interface ClusterEvents {
  report(worker: number, report: Report<Tensor>): void;
  /** A worker died, exited, or broke the protocol: the step in flight must fail. */
  failure(error: WorkerError): void;
  /** A host reached a 'pause' failpoint (tests kill the worker there). */
  failpoint?(worker: number, action: FailpointAction, task: TaskInfo): void;
}

/**
 * The hosts of a plan, as the coordinator sees them, whatever carries the messages: worker threads
 * (threads.ts) or direct calls in this thread (in-process.ts). Data goes out with `startStep` and
 * `send` (ordered per worker); everything else is a control call that rejects if its worker dies.
 */
export interface Cluster {
  readonly workers: number;
  /** Every host learns the step's shards before any of the step's data reaches it. */
  startStep(start: StepStart): void;
  /** Feeds for a worker's input actors; the tensors are handed over (transferred). */
  send(worker: number, messages: Message[]): void;
  setParams(values: ReadonlyMap<number, Tensor>): Promise<void>;
  getParams(): Promise<Map<number, Tensor>>;
  waiting(): Promise<(WaitingEntry & { worker: number })[]>;
  stats(): Promise<HostStats[]>;
  /** Drops every host's step state (after a failed step). */
  reset(): Promise<void>;
  setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void>;
  /** Each worker's pipeline actions (index: worker), or null for dataflow order. */
  setSchedule(actions: readonly (readonly HostAction[])[] | null): Promise<void>;
  close(): Promise<void>;
}
