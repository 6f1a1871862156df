import type { Failpoint, FailpointAction } from '../actor/failpoint.ts';
import type { HostStats, Message, TaskInfo, WaitingEntry } from '../actor/host.ts';
import type { Report, StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import type { WorkerError } from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { WorkerTrace } from '../trace/recorder.ts';

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
  /** Gives every host holding a parameter its own copy of the value (the caller keeps its tensors). */
  setParams(values: ReadonlyMap<number, Tensor>): Promise<void>;
  getParams(): Promise<Map<number, Tensor>>;
  waiting(): Promise<(WaitingEntry & { worker: number })[]>;
  stats(): Promise<HostStats[]>;
  /** Drops every host's step state (after a failed step). */
  reset(): Promise<void>;
  setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void>;
  /** Each worker's pipeline actions (index: worker), or null for dataflow order. */
  setSchedule(actions: readonly (readonly HostAction[])[] | null): Promise<void>;
  /** The optimizer every host runs on the parameters it owns (null: gradients are reported instead). */
  setOptimizer(spec: OptimizerSpec | null): Promise<void>;
  /**
   * A step's update, to every host after the step's data and before the next start (same order as
   * `startStep` and `send`). Each host answers with an 'updated' report, or a 'failed' one whose
   * error's phase is 'update' (Note [deferred update] in deferred-update.ts).
   */
  update(u: StepUpdate): void;
  /** The optimizer state of every parameter (merged over hosts), and setting it back. */
  getOptimizerState(): Promise<OptimizerCheckpoint>;
  setOptimizerState(state: OptimizerCheckpoint): Promise<void>;
  /** Anomaly mode in every host: each value a task makes is checked for NaN and infinities. */
  setAnomalyMode(on: boolean): Promise<void>;
  /** Turns tracing on or off in every host. */
  setTracing(on: boolean): Promise<void>;
  /** Every host's record since the last take (wall-clock times). */
  takeTrace(): Promise<WorkerTrace[]>;
  close(): Promise<void>;
}

/** One optimizer state from the hosts' parts (each host holds the states of the parameters it owns). */
export function mergeOptimizerStates(parts: readonly OptimizerCheckpoint[]): OptimizerCheckpoint {
  const named = parts.find((p) => p.name !== 'none') ?? parts[0]!;
  const states: OptimizerCheckpoint['states'] = {};
  for (const p of parts) Object.assign(states, p.states);
  return { name: named.name, step: Math.max(...parts.map((p) => p.step)), states };
}
