import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { transfer } from 'comlink';
import type { Failpoint } from '../actor/failpoint.ts';
import type { HostStats, Message, WaitingEntry } from '../actor/host.ts';
import type { StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import { toWireError } from '../actor/wire-error.ts';
import { type ErrorContext, InputError, type ProtocolError, type WorkerError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import { type Plan, paramWorkers } from '../partition/plan.ts';
import { decodeHostOutputs } from '../protocol/batch-reader.ts';
import { decodeOptimizerState, decodeParams, encodeOptimizerState, encodeParams } from '../protocol/codec.ts';
import { type BoardStatus, type HostControl, isTask } from '../protocol/control.ts';
import { COORDINATOR, type Limits } from '../protocol/envelope.ts';
import { Link } from '../protocol/link.ts';
import { type PackedGraph, packGraph } from '../protocol/packed-graph.ts';
import { portWire } from '../protocol/port-wire.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { WorkerTrace } from '../trace/recorder.ts';
import { type Cluster, type ClusterEvents, mergeOptimizerStates } from './cluster.ts';
import { WorkerPool } from './pool.ts';
import { type RuntimeOptions, registerThreadsCluster } from './runtime.ts';

const FROM_SOURCE = import.meta.url.endsWith('.ts');
const HOST_WORKER = new URL(`../../workers/host.worker.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url);

/** `waiting()` serves a step timeout's error message: a hung host must not delay it (RELIABILITY.md 1). */
const WAITING_TIMEOUT_MS = 250;

/**
 * The young generation of each worker's heap. A step makes millions of short-lived objects (messages,
 * tensors, tasks) while the backward keeps activations alive; with V8's default (48 MiB) scavenges
 * took about a quarter of a worker's time on the million-node graph. Measured (actor messages/s,
 * medians of interleaved runs): laneGraph(1000, 250) 367k with 48 MiB, 526k with 192 MiB;
 * laneGraph(1000, 20) 468k and 519k. V8 grows it only as far as it is used.
 */
const YOUNG_GENERATION_MB = 192;

/** What hosts still wait for, and why the hosts that did not answer are missing from it. */
export type WaitingList = (WaitingEntry & { worker: number })[] & { silent?: readonly string[] };

/**
 * The hosts of a plan on worker threads: a supervised pool (one worker per plan worker), one
 * MessageChannel per pair of workers that exchange data, and one data channel between the coordinator
 * and each worker for step starts, feeds and reports. Control calls go through the pool's guarded
 * comlink proxies (Note [guarded calls] in pool.ts).
 */
export class ThreadsCluster implements Cluster {
  readonly workers: number;
  private gen = 0;
  private step = -1;
  private readonly dropped: number[];
  private closing: Promise<void> | null = null;
  private readonly limits: Limits;

  private constructor(
    private readonly plan: Plan,
    private readonly pool: WorkerPool<HostControl>,
    private readonly links: Link[],
  ) {
    this.workers = plan.workers;
    this.dropped = new Array<number>(plan.workers).fill(0);
    this.limits = { nodes: plan.graph.size, replicas: plan.replicas, workers: plan.workers };
  }

  static async create(plan: Plan, events: ClusterEvents, options: RuntimeOptions): Promise<ThreadsCluster> {
    // Packed once, while the workers boot (the first init call), then cloned to each.
    let graph: PackedGraph | null = null;
    const peers: [number, MessagePort][][] = Array.from({ length: plan.workers }, () => []);
    const talk = new Uint8Array(plan.workers * plan.workers);
    for (const e of plan.crossEdges)
      talk[Math.min(e.fromWorker, e.toWorker) * plan.workers + Math.max(e.fromWorker, e.toWorker)] = 1;
    // Every copy of a replicated parameter gets the contributions of every replica's consumers.
    const pair = (a: number, b: number) => {
      if (a !== b) talk[Math.min(a, b) * plan.workers + Math.max(a, b)] = 1;
    };
    for (const id of plan.params) {
      const copies = paramWorkers(plan, id);
      if (copies.length < 2) continue;
      for (const p of plan.placement)
        for (const [c] of plan.consumers[id]!) for (const b of copies) if (p[c]! >= 0) pair(p[c]!, b);
    }
    for (let a = 0; a < plan.workers; a++) {
      for (let b = a + 1; b < plan.workers; b++) {
        if (talk[a * plan.workers + b] === 0) continue;
        const { port1, port2 } = new MessageChannel();
        peers[a]!.push([b, port1]);
        peers[b]!.push([a, port2]);
      }
    }
    const links: Link[] = [];
    const mainPorts: MessagePort[] = [];
    let cluster: ThreadsCluster | null = null;
    const report = (w: number, raw: unknown) => cluster?.receive(w, raw, events);
    const protocolError = (w: number, err: ProtocolError) => cluster?.protocolError(w, err, events);
    try {
      const pool = await WorkerPool.create<HostControl>({
        url: HOST_WORKER,
        resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
        size: plan.workers,
        describe: (status) => describeStatus(plan, status),
        onFailure: (error: WorkerError) => events.failure(error),
        init: async (w, api) => {
          const { port1, port2 } = new MessageChannel();
          mainPorts.push(port1);
          const gen = () => cluster?.gen ?? 0;
          links[w] = new Link(
            portWire(port1),
            COORDINATOR,
            w,
            gen,
            (_, raw) => report(w, raw),
            (e) => protocolError(w, e),
          );
          graph ??= packGraph(plan.graph);
          const init = {
            graph,
            // Plain data: compile() is pure, so each worker rebuilds this very plan (init returns its placement).
            options: plan.options,
            coordinator: port2,
            peers: peers[w]!,
            gen: 0,
            pool: options.pool === false ? null : (options.pool ?? {}),
            // Resolved by the coordinator, which imported them already (Note [user ops on workers]).
            ops: options.ops ?? [],
          };
          const placement = await api.init(transfer(init, [port2, ...peers[w]!.map(([, p]) => p)]));
          if (!samePlacement(placement, plan.placement)) {
            throw new InputError(
              `worker ${w} compiled a plan that places nodes differently from the coordinator's`,
              {
                worker: w,
                expected: 'the same placement (compile is pure)',
              },
            );
          }
        },
      });
      cluster = new ThreadsCluster(plan, pool, links);
    } catch (err) {
      for (const p of mainPorts) p.close();
      for (const list of peers) for (const [, p] of list) p.close();
      throw err;
    }
    clusters.set(plan, cluster);
    return cluster;
  }

  private receive(worker: number, raw: unknown, events: ClusterEvents): void {
    let envelope: ReturnType<typeof decodeHostOutputs>;
    try {
      envelope = decodeHostOutputs(raw, this.links[worker]!.edgeIn, worker, this.limits);
    } catch (err) {
      this.protocolError(worker, err as ProtocolError, events);
      return;
    }
    if (envelope.gen < this.gen) {
      this.dropped[worker]! += envelope.messages.length;
      return;
    }
    for (const m of envelope.messages) {
      if (m.kind === 'failpoint') events.failpoint?.(worker, m.action, m.task);
      else events.report(worker, m);
    }
  }

  /** A broken envelope from a host fails the step in flight, like an error in the host. */
  private protocolError(worker: number, err: ProtocolError, events: ClusterEvents): void {
    events.report(worker, {
      kind: 'failed',
      step: this.step,
      error: toWireError(err, { worker, step: this.step }),
    });
  }

  startStep(start: StepStart): void {
    this.step = start.step;
    for (const link of this.links) link.push({ kind: 'start', ...start });
  }

  send(worker: number, messages: Message[]): void {
    const link = this.links[worker]!;
    for (const m of messages) link.push(m);
  }

  async setParams(values: ReadonlyMap<number, Tensor>): Promise<void> {
    await Promise.all(
      this.links.map((link, w) => {
        // Every copy of a replicated parameter gets the value (Note [parameter placement]).
        const mine = new Map([...values].filter(([id]) => paramWorkers(this.plan, id).includes(w)));
        if (mine.size === 0) return undefined;
        // Copies: the caller keeps its tensors; the copies are transferred.
        const { value, tx } = encodeParams(mine, link.edgeOut);
        return this.pool.call(w, 'setParams', (api) => api.setParams(transfer(value, tx.list)));
      }),
    );
  }

  async getParams(): Promise<Map<number, Tensor>> {
    const lists = await this.pool.all('getParams', (api) => api.getParams());
    const out = new Map<number, Tensor>();
    lists.forEach((list, w) => {
      for (const [id, t] of decodeParams(list, this.links[w]!.edgeIn, this.limits)) out.set(id, t);
    });
    return out;
  }

  /**
   * What every host still waits for. A host that does not answer in time (hung, or busy) is left out
   * and named in `silent`, with what its status board last showed.
   */
  async waiting(): Promise<WaitingList> {
    const answers = await Promise.allSettled(
      this.links.map((_, w) => this.pool.call(w, 'waiting', (api) => api.waiting(), WAITING_TIMEOUT_MS)),
    );
    const entries: WaitingList = answers.flatMap((a, worker) =>
      a.status === 'fulfilled' ? a.value.map((w) => ({ ...w, worker })) : [],
    );
    entries.silent = answers.flatMap((a) => (a.status === 'rejected' ? [(a.reason as Error).message] : []));
    return entries;
  }

  async stats(): Promise<HostStats[]> {
    const stats = await this.pool.all('stats', (api) => api.stats());
    // Reports of an old generation, dropped here, count against the worker that sent them.
    return stats.map((s, w) => ({ ...s, dropped: s.dropped + this.dropped[w]! }));
  }

  async reset(): Promise<void> {
    const gen = ++this.gen;
    await this.pool.all('reset', (api) => api.reset(gen));
  }

  async setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void> {
    await this.pool.all('setFailpoints', (api, w) => {
      const mine = failpoints
        .filter((f) => f.worker === undefined || f.worker === w)
        .map(({ worker: _, ...f }) => f);
      return api.setFailpoints(mine);
    });
  }

  async setSchedule(actions: readonly (readonly HostAction[])[] | null): Promise<void> {
    await this.pool.all('setSchedule', (api, w) =>
      api.setSchedule(actions === null ? null : [...(actions[w] ?? [])]),
    );
  }

  async setOptimizer(spec: OptimizerSpec | null): Promise<void> {
    await this.pool.all('setOptimizer', (api) => api.setOptimizer(spec));
  }

  update(u: StepUpdate): void {
    for (const link of this.links) link.push({ kind: 'update', ...u });
  }

  async getOptimizerState(): Promise<OptimizerCheckpoint> {
    const parts = await this.pool.all('getOptimizerState', (api) => api.getOptimizerState());
    return mergeOptimizerStates(parts.map((p, w) => decodeOptimizerState(p, this.links[w]!.edgeIn)));
  }

  /** Each host gets copies of the states of the parameters it holds. */
  async setOptimizerState(state: OptimizerCheckpoint): Promise<void> {
    const names = this.plan.graph.names();
    await this.pool.all('setOptimizerState', (api, w) => {
      const mine = Object.entries(state.states).filter(([name]) => {
        const id = names.get(name);
        return id === undefined || paramWorkers(this.plan, id).includes(w);
      });
      const { value, tx } = encodeOptimizerState(
        { ...state, states: Object.fromEntries(mine) },
        this.links[w]!.edgeOut,
        true,
      );
      return api.setOptimizerState(transfer(value, tx.list));
    });
  }

  async setAnomalyMode(on: boolean): Promise<void> {
    await this.pool.all('setAnomalyMode', (api) => api.setAnomalyMode(on));
  }

  async setTracing(on: boolean): Promise<void> {
    await this.pool.all('setTracing', (api) => api.setTracing(on));
  }

  takeTrace(): Promise<WorkerTrace[]> {
    return this.pool.all('takeTrace', (api) => api.takeTrace());
  }

  /**
   * Terminates every worker and closes every port; idempotent. Workers are terminated without asking
   * them to close first: a hung worker could not answer.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const link of this.links) link.close();
      await this.pool.close();
    })();
    return this.closing;
  }

  /** For tests: terminates worker `w` as if from outside; reported as a failure like any unasked exit. */
  killWorker(w: number): Promise<void> {
    return this.pool.kill(w);
  }

  /** For tests: posts a raw value on the coordinator's data port to worker `w`, as a broken envelope. */
  postRaw(w: number, value: unknown, transfer: ArrayBuffer[] = []): void {
    this.links[w]!.postRaw(value, transfer);
  }
}

function samePlacement(a: readonly Int32Array[], b: readonly Int32Array[]): boolean {
  return (
    a.length === b.length &&
    a.every((p, r) => p.length === b[r]!.length && p.every((w, id) => w === b[r]![id]))
  );
}

/** What a dead worker was doing, from its status board, in the plan's words. */
function describeStatus(plan: Plan, s: BoardStatus): { text: string; context: ErrorContext } {
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

const clusters = new WeakMap<Plan, ThreadsCluster>();

/** The threads cluster running a plan (`runtime.plan`), for tests that kill a worker from outside. */
export function threadsClusterOf(plan: Plan): ThreadsCluster | undefined {
  return clusters.get(plan);
}

registerThreadsCluster((plan, events, options) => ThreadsCluster.create(plan, events, options));
