import type { Failpoint, FailpointAction } from '../actor/failpoint.ts';
import type { HostLimits, HostStats, Message, TaskInfo, WaitingEntry } from '../actor/host.ts';
import type { Report, StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import type { ShardStorage } from '../autodiff/microbatch.ts';
import { type ErrorContext, WorkerError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import { type Plan, paramWorkers } from '../partition/plan.ts';
import { type BoardStatus, type HostInit, isTask } from '../protocol/control.ts';
import type { PackedGraph } from '../protocol/packed-graph.ts';
import { kernelsInUse } from '../tensor/default-kernels.ts';
import type { PoolOptions } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { WorkerTrace } from '../trace/recorder.ts';
import { dict } from '../util/names.ts';
import type { Halt } from './host-shell.ts';
import type { ResolvedCluster } from './rendezvous.ts';

/** What a cluster tells the coordinator. */
export interface ClusterEvents {
  report(worker: number, report: Report<Tensor>): void;
  /** A worker died, exited, or broke the protocol: the step in flight must fail. */
  failure(error: WorkerError): void;
  /** A host reached a 'pause' failpoint (tests kill the worker there). */
  failpoint?(worker: number, action: FailpointAction, task: TaskInfo): void;
}

/** What a cluster reads of the runtime's options. */
export interface ClusterOptions {
  /** Each host's storage pool (Note [storage pool]): default on where a host has a pool of its own. */
  readonly pool?: false | PoolOptions;
  /** Op modules, resolved, for hosts in other threads to import (Note [user ops on workers]). */
  readonly ops: readonly string[];
  /** In-process only: deliver messages in a seeded random order. */
  readonly shuffleSeed?: number;
  /** Mode 'nats' only: the node processes' cluster (Note [rendezvous]). */
  readonly cluster?: ResolvedCluster;
  /** Every host's memory budget and credits (Note [memory budget], Note [activation credits]). */
  readonly limits: HostLimits;
}

/** Starts the hosts of a plan; rejects (having stopped whatever it started) if any host cannot start. */
export type ClusterFactory = (plan: Plan, events: ClusterEvents, options: ClusterOptions) => Promise<Cluster>;

/**
 * What hosts still wait for, and each host that did not answer in time (hung, busy, or dead), with
 * why it is missing from the list (Note [silent hosts] in step.ts).
 */
export type WaitingList = (WaitingEntry & { worker: number })[] & {
  readonly silent: readonly { readonly worker: number; readonly why: string }[];
};

/**
 * The hosts of a plan, as the coordinator sees them, whatever carries the messages: worker threads
 * (threads.ts), direct calls in this thread (in-process.ts), bytes in this thread (loopback.ts).
 * Data goes out with `startStep` and `send` (ordered per worker); everything else is a control call
 * that rejects if its worker dies. Clusters are made by name (clusters.ts).
 */
export interface Cluster {
  readonly workers: number;
  /** Every host learns the step's shards before any of the step's data reaches it. */
  startStep(start: StepStart): void;
  /** Feeds for a worker's input actors; the tensors are handed over (transferred). */
  send(worker: number, messages: Message[]): void;
  /**
   * Where the coordinator makes the feeds' shard copies it sends, on a cluster that never keeps a
   * tensor it is sent (it copies it, or transfers it away by the end of the turn): the last step's
   * storages, written again (Note [feed storages] in feed-storage.ts). Absent: fresh ones.
   */
  readonly feedStorage?: ShardStorage;
  /** Gives every host holding a parameter its own copy of the value (the caller keeps its tensors). */
  setParams(values: ReadonlyMap<number, Tensor>): Promise<void>;
  getParams(): Promise<Map<number, Tensor>>;
  waiting(): Promise<WaitingList>;
  stats(): Promise<HostStats[]>;
  /**
   * Drops every host's step state (after a failed step); resolves with the step of the last update
   * each host applied (-1: none), which tells whether one applied the failed step's (Note [local update]).
   */
  reset(): Promise<number[]>;
  /**
   * Stops a host that no longer answers (Note [silent hosts] in step.ts): its thread terminated, or
   * its shell halted. Not reported as a failure (the caller has its reason); later calls to it
   * reject with `death`.
   */
  stop(worker: number, death: WorkerError): Promise<void>;
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
  /**
   * Every host's record since the last take (wall-clock times), and the coordinator's step marks
   * (worker COORDINATOR, Note [step marks]) where the cluster records them.
   */
  takeTrace(): Promise<WorkerTrace[]>;
  close(): Promise<void>;
}

/** One optimizer state from the hosts' parts (each host holds the states of the parameters it owns). */
export function mergeOptimizerStates(parts: readonly OptimizerCheckpoint[]): OptimizerCheckpoint {
  const named = parts.find((p) => p.name !== 'none') ?? parts[0]!;
  // Not Object.assign, which would set a parameter named __proto__ as the prototype (Note [names as keys]).
  const states: OptimizerCheckpoint['states'] = dict();
  for (const p of parts) for (const [name, state] of Object.entries(p.states)) states[name] = state;
  return { name: named.name, step: Math.max(...parts.map((p) => p.step)), states };
}

/** The pairs of workers that exchange data: one wire each (index a * workers + b, a < b). */
export function talkingPairs(plan: Plan): Uint8Array {
  const n = plan.workers;
  const talk = new Uint8Array(n * n);
  const pair = (a: number, b: number) => {
    if (a !== b) talk[Math.min(a, b) * n + Math.max(a, b)] = 1;
  };
  // From the columns, not plan.crossEdges: a million-node plan placed per node has a million of those.
  const { start, node } = plan.consumerEdges;
  for (const p of plan.placement) {
    for (let id = 0; id < p.length; id++) {
      if (p[id]! < 0) continue;
      for (let e = start[id]!; e < start[id + 1]!; e++) pair(p[id]!, p[node[e]!]!);
    }
  }
  // Every copy of a replicated parameter gets the contributions of every replica's consumers.
  for (const id of plan.params) {
    const copies = paramWorkers(plan, id);
    if (copies.length < 2) continue;
    for (const p of plan.placement)
      for (const [c] of plan.consumers[id]!) for (const b of copies) if (p[c]! >= 0) pair(p[c]!, b);
  }
  return talk;
}

/** What a host was doing (a status board, or a failpoint's task), in the plan's words. */
export function describeStatus(plan: Plan, s: BoardStatus): { text: string; context: ErrorContext } {
  if (!isTask(s.phase)) {
    const text = s.phase === 'idle' ? 'while idle' : 'while receiving messages';
    return { text: `${text} (step ${s.step})`, context: { phase: s.phase, step: s.step } };
  }
  const node = plan.graph.nodes[s.node];
  const name = node === undefined ? `%${s.node}` : label(node);
  return {
    text: `during the ${s.phase} of node ${name}${node ? ` (${node.op})` : ''}, replica ${s.replica}, microbatch ${s.mb}, step ${s.step}`,
    context: {
      phase: s.phase,
      node: name,
      ...(node ? { op: node.op } : {}),
      replica: s.replica,
      microbatch: s.mb,
      step: s.step,
    },
  };
}

/** A host in this thread that stopped at failpoint 'exit': the error its worker's death would be. */
export function exitedError(plan: Plan, worker: number, status: BoardStatus): WorkerError {
  const { text, context } = describeStatus(plan, status);
  return new WorkerError(`worker ${worker} exited unexpectedly (code 0) ${text}`, {
    ...context,
    worker,
    exitCode: 0,
  });
}

/** Whether a host compiled the coordinator's placement (compile is pure: anything else is a bug or a mismatch). */
export function samePlacement(a: readonly Int32Array[], b: readonly Int32Array[]): boolean {
  return (
    a.length === b.length &&
    a.every((p, r) => p.length === b[r]!.length && p.every((w, id) => w === b[r]![id]))
  );
}

/** The status of a host doing nothing (a board never written). */
export const IDLE_STATUS: BoardStatus = { phase: 'idle', node: -1, replica: -1, mb: -1, step: -1 };

/** A host sharing this thread that stopped at a failpoint: what it was doing, and its death for 'exit'. */
export interface Stopped {
  readonly status: BoardStatus;
  readonly death: WorkerError | null;
}

/**
 * Failpoints that stop a host sharing this thread (in-process, loopback): no thread to block or end,
 * so its shell halts (takes and runs nothing more), and 'exit' is reported as its worker's death.
 */
export function sharedThreadHalt(
  plan: Plan,
  worker: number,
  events: ClusterEvents,
  onStop: (stopped: Stopped) => void,
): Halt {
  const status = (task: TaskInfo, step: number): BoardStatus => ({
    phase: task.phase,
    node: task.node,
    replica: task.replica,
    mb: task.mb,
    step,
  });
  return {
    exit(task, step) {
      const death = exitedError(plan, worker, status(task, step));
      onStop({ status: status(task, step), death });
      events.failure(death);
    },
    block: (task, step) => onStop({ status: status(task, step), death: null }),
  };
}

/**
 * What every host of `plan` is given to build itself (HostInit): plain data, the same for every
 * transport; `graph` is the plan's graph packed once by the caller (Note [packed graph]).
 */
export function hostInit(plan: Plan, options: ClusterOptions, graph: PackedGraph): HostInit {
  return {
    graph,
    // Plain data: compile() is pure, so each host rebuilds this very plan (and its placement).
    options: plan.options,
    gen: 0,
    pool: options.pool === false ? null : (options.pool ?? {}),
    // Resolved by the coordinator, which imported them already (Note [user ops on workers]).
    ops: options.ops,
    limits: options.limits,
    kernels: kernelsInUse(),
  };
}
