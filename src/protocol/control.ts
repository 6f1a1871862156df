// The control plane between the coordinator and a host: what a host is given to start, its control
// API, the comlink endpoint for a Node port, and the status board a worker thread writes so that its
// death can be explained.
import type { MessagePort, TransferListItem } from 'node:worker_threads';
import type { Endpoint } from 'comlink';
import type { Failpoint } from '../actor/failpoint.ts';
import type { HostLimits, HostStats, TaskPhase, WaitingEntry } from '../actor/host.ts';
import type { HostAction } from '../actor/task-queue.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { PlanOptions } from '../partition/plan.ts';
import type { PlanColumns } from '../partition/plan-columns.ts';
import type { PoolOptions } from '../tensor/pool.ts';
import type { WorkerTrace } from '../trace/recorder.ts';
import type { OptimizerState } from './codec.ts';
import type { WireTensor } from './envelope.ts';
import type { ListenAt, RemoteData } from './node-wires.ts';
import type { PackedGraph } from './packed-graph.ts';

/**
 * What a host is given once to build itself, whatever carries it: plain data (structured clone to a
 * worker thread, a frame of bytes elsewhere: encodeInit in frame.ts). Its wires come separately.
 */
export interface HostInit {
  /** packGraph(plan.graph): Note [packed graph]. */
  readonly graph: PackedGraph;
  /** The plan's resolved options: compile() is pure, so the host rebuilds the same plan from them. */
  readonly options: PlanOptions;
  /**
   * The plan itself (worker threads only, by structured clone): the host checks it instead of compiling
   * it again (Note [shipped plan] in src/partition/plan-columns.ts). Node processes compile.
   */
  readonly plan?: PlanColumns;
  readonly gen: number;
  /** The host's storage pool (Note [storage pool]), or null: every storage fresh. */
  readonly pool: PoolOptions | null;
  /** Modules to import before the graph is unpacked, resolved (Note [user ops on workers]). */
  readonly ops: readonly string[];
  /** The host's memory budget and credits (Note [memory budget], Note [activation credits]). */
  readonly limits: HostLimits;
  /**
   * The coordinator's kernels by name (kernelsInUse()), which the host runs too: the reference engine
   * and every host then round alike (Note [relaxed SIMD for every process]).
   */
  readonly kernels: string;
}

/**
 * A worker thread's data ports: to the coordinator (null on a node process, where the coordinator is
 * reached over the network), and to each worker it exchanges data with on the same node.
 */
export interface ThreadPorts {
  readonly coordinator: MessagePort | null;
  readonly peers: readonly (readonly [number, MessagePort])[];
}

/** What a host worker thread exposes through comlink (every call guarded by the pool). */
export interface WorkerControl extends HostControl {
  /**
   * Imports the op modules, then builds the host and its shell over the ports; returns the placement
   * of the plan it compiled, for the coordinator to compare.
   */
  init(init: HostInit, ports: ThreadPorts, remote?: RemoteData): Promise<readonly Int32Array[]>;
  /** On a node process, before init: listens for the host's TCP links (Note [node links]); its port. */
  listen(at: ListenAt): Promise<number>;
}

/** The control API of a running host (a HostShell's), whatever carries the calls. */
export interface HostControl {
  /** Tensors transferred in; the host owns them from then on. */
  setParams(values: [number, WireTensor][]): void;
  /** Copies of the host's parameters, transferred out. */
  getParams(): [number, WireTensor][];
  waiting(): WaitingEntry[];
  stats(): HostStats;
  /**
   * Drops the step in flight and moves to generation `gen` (older envelopes are dropped from then on);
   * returns the step of the last update the host applied (-1: none).
   */
  reset(gen: number): number;
  setFailpoints(failpoints: Failpoint[]): void;
  setOptimizer(spec: OptimizerSpec | null): void;
  /** Copies of the state of the owned parameters' optimizer, transferred out. */
  getOptimizerState(): OptimizerState<WireTensor>;
  setOptimizerState(state: OptimizerState<WireTensor>): void;
  /** This worker's pipeline actions from the next step on, or null for dataflow order. */
  setSchedule(actions: HostAction[] | null): void;
  /** Anomaly mode: report the first non-finite value of each task. */
  setAnomalyMode(on: boolean): void;
  /** Records spans, messages and memory counters from now on (or stops). */
  setTracing(on: boolean): void;
  /** What was recorded since the last take. */
  takeTrace(): WorkerTrace;
  /** Stops the host's shell and closes its links; the host then has nothing left to do. */
  close(): void;
}

/** The `workerData` the pool gives every worker. */
export interface WorkerData {
  readonly worker: number;
  readonly board: Int32Array;
}

interface NodePort {
  postMessage(value: unknown, transferList?: readonly TransferListItem[]): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
  off(event: 'message', listener: (value: unknown) => void): unknown;
}

/** What comlink listens with: a function of a message event, or an object with handleEvent. */
type Listener = ((event: { data: unknown }) => void) | { handleEvent(event: { data: unknown }): void };

/**
 * The part of comlink's `Endpoint` that controlEndpoint implements, typed without it: comlink's type
 * names DOM types (EventSource, Transferable), and the package's declarations import this file, so a
 * Node program type-checking them (skipLibCheck off, no DOM lib) would fail on comlink's.
 */
export interface ControlEndpoint {
  postMessage(message: unknown, transfer?: TransferListItem[]): void;
  addEventListener(type: string, listener: Listener): void;
  removeEventListener(type: string, listener: Listener): void;
}

/**
 * A comlink endpoint over a Node Worker or MessagePort (comlink's own node adapter has no types under
 * nodenext). With `keepListening`, removing a listener is ignored: comlink removes its listener when
 * a proxy on the other side is garbage-collected (RELEASE), and a worker whose parentPort has no
 * listener left exits with code 0. The control endpoint lives as long as the worker.
 */
export function controlEndpoint(port: NodePort, options: { keepListening?: boolean } = {}): ControlEndpoint {
  const listeners = new Map<Listener, (value: unknown) => void>();
  return {
    postMessage: (message: unknown, transfer?: TransferListItem[]) => port.postMessage(message, transfer),
    addEventListener: (_type: string, handler: Listener) => {
      const l = (data: unknown) => {
        const event = { data } as MessageEvent;
        if (typeof handler === 'function') handler(event);
        else handler.handleEvent(event);
      };
      listeners.set(handler, l);
      port.on('message', l);
    },
    removeEventListener: (_type: string, handler: Listener) => {
      const l = listeners.get(handler);
      if (l === undefined || options.keepListening) return;
      port.off('message', l);
      listeners.delete(handler);
    },
  } as Endpoint;
}

// Note [status board]
// Each worker has a SharedArrayBuffer of a few Int32 slots that only it writes, with Atomics.store,
// before every task: phase, node, replica, microbatch, step. When the worker is terminated from
// outside, exits or crashes mid-task, the pool reads the board and the error names what it was doing.

/** A task's phase, or what the shell does between tasks. */
export type BoardPhase = TaskPhase | 'idle' | 'receive';
export const BOARD_PHASES: readonly BoardPhase[] = [
  'idle',
  'receive',
  'forward',
  'backward',
  'input',
  'weight',
];

/** Whether the board names a task (a node, a replica and a microbatch). */
export function isTask(phase: BoardPhase): phase is TaskPhase {
  return phase !== 'idle' && phase !== 'receive';
}
const PHASE = 0;
const NODE = 1;
const REPLICA = 2;
const MB = 3;
const STEP = 4;

export interface BoardStatus {
  readonly phase: BoardPhase;
  readonly node: number;
  readonly replica: number;
  readonly mb: number;
  readonly step: number;
}

export function newBoard(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(5 * Int32Array.BYTES_PER_ELEMENT));
}

export function writeBoard(
  board: Int32Array,
  phase: BoardPhase,
  step: number,
  task?: { readonly node: number; readonly replica: number; readonly mb: number },
): void {
  Atomics.store(board, NODE, task?.node ?? -1);
  Atomics.store(board, REPLICA, task?.replica ?? -1);
  Atomics.store(board, MB, task?.mb ?? -1);
  Atomics.store(board, STEP, step);
  Atomics.store(board, PHASE, BOARD_PHASES.indexOf(phase));
}

export function readBoard(board: Int32Array): BoardStatus {
  return {
    phase: BOARD_PHASES[Atomics.load(board, PHASE)] ?? 'idle',
    node: Atomics.load(board, NODE),
    replica: Atomics.load(board, REPLICA),
    mb: Atomics.load(board, MB),
    step: Atomics.load(board, STEP),
  };
}
