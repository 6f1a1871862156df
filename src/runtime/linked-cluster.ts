import type { Failpoint } from '../actor/failpoint.ts';
import type { HostStats, Message } from '../actor/host.ts';
import type { StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import { toWireError } from '../actor/wire-error.ts';
import type { ProtocolError, WorkerError } from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import { type Plan, paramWorkers } from '../partition/plan.ts';
import { decodeHostOutputs } from '../protocol/batch-reader.ts';
import { decodeOptimizerState, decodeParams, encodeOptimizerState, encodeParams } from '../protocol/codec.ts';
import type { HostControl } from '../protocol/control.ts';
import { COORDINATOR, type Limits } from '../protocol/envelope.ts';
import { Link } from '../protocol/link.ts';
import type { Wire } from '../protocol/wire.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { TraceRecorder, type WorkerTrace } from '../trace/recorder.ts';
import { type Cluster, type ClusterEvents, mergeOptimizerStates, type WaitingList } from './cluster.ts';
import { FeedStorages } from './feed-storage.ts';

/** `waiting()` serves a step timeout's error message: a hung host must not delay it. */
const WAITING_TIMEOUT_MS = 250;

export type ControlMethod = keyof HostControl;
type Answer<K extends ControlMethod> = Awaited<ReturnType<HostControl[K]>>;

/**
 * How a cluster reaches its hosts' control APIs, whatever carries the calls (comlink to a worker
 * thread, a direct call in this thread, later a request over the network). Every call is guarded: it
 * rejects when its host is dead or closed, and after `timeoutMs` when the host does not answer.
 */
export interface HostCalls {
  /** `method(...args)` on worker `worker`'s host; the buffers in `transfer` (of args[0]) are handed over. */
  call<K extends ControlMethod>(
    worker: number,
    method: K,
    args: Parameters<HostControl[K]>,
    options?: { readonly timeoutMs?: number; readonly transfer?: readonly ArrayBuffer[] },
  ): Promise<Answer<K>>;
  /** Stops a host as if from outside (tests): reported like any death nobody asked for. */
  kill(worker: number): Promise<void>;
  /** Stops a host that no longer answers (Cluster.stop): not reported; its calls reject with `death`. */
  stop(worker: number, death: WorkerError): Promise<void>;
  /** Stops every host; pending calls reject. */
  close(): Promise<void>;
}

/**
 * The coordinator's side of hosts that run elsewhere and talk over wires (worker threads, the
 * loopback's bytes, later node processes): one link per host for step starts, feeds, updates and
 * reports, and guarded control calls for everything else.
 */
export class LinkedCluster implements Cluster {
  readonly workers: number;
  /** A link copies what it sends into its envelope or ring, or transfers it (Note [feed storages]). */
  readonly feedStorage = new FeedStorages().take;
  private gen = 0;
  private step = -1;
  private readonly dropped: number[];
  private readonly links: Link[];
  private readonly limits: Limits;
  private closing: Promise<void> | null = null;
  /** The coordinator's step marks (Note [step marks]): starts and updates sent, envelopes in and out. */
  private readonly recorder = new TraceRecorder(COORDINATOR);

  constructor(
    private readonly plan: Plan,
    private readonly events: ClusterEvents,
    private readonly calls: HostCalls,
    wires: readonly Wire[],
  ) {
    this.workers = plan.workers;
    this.dropped = new Array<number>(plan.workers).fill(0);
    this.limits = { nodes: plan.graph.size, replicas: plan.replicas, workers: plan.workers };
    this.links = wires.map(
      (wire, w) =>
        new Link(
          wire,
          COORDINATOR,
          w,
          () => this.gen,
          (_, raw) => this.marked('receive', w, () => this.receive(w, raw)),
          (e) => this.protocolError(w, e),
        ),
    );
    for (const [w, link] of this.links.entries()) link.aroundPost = (post) => this.marked('post', w, post);
  }

  /** Runs `f`, marked in the trace when it records (Note [step marks]). */
  private marked(what: 'post' | 'receive', peer: number, f: () => void): void {
    if (!this.recorder.enabled) {
      f();
      return;
    }
    const time = this.recorder.now();
    f();
    this.recorder.mark({ what, step: this.step, peer }, time);
  }

  private receive(worker: number, raw: unknown): void {
    let envelope: ReturnType<typeof decodeHostOutputs>;
    try {
      envelope = decodeHostOutputs(raw, this.links[worker]!.edgeIn, worker, this.limits);
    } catch (err) {
      this.protocolError(worker, err as ProtocolError);
      return;
    }
    if (envelope.gen < this.gen) {
      this.dropped[worker]! += envelope.messages.length;
      return;
    }
    for (const m of envelope.messages) {
      if (m.kind === 'failpoint') this.events.failpoint?.(worker, m.action, m.task);
      else this.events.report(worker, m);
    }
  }

  /**
   * A broken envelope from a host (phase 'receive'), or one that could not be sent to it, fails the
   * step in flight like an error in the host (Note [refused envelopes] in host-shell.ts).
   */
  private protocolError(worker: number, err: ProtocolError): void {
    const phase = err.context.phase === 'receive' ? { phase: 'receive' as const } : {};
    const error = toWireError(err, { worker, step: this.step, ...phase });
    this.events.report(worker, { kind: 'failed', step: this.step, error });
  }

  /** The same call on every host, in worker order. */
  private all<K extends ControlMethod>(
    method: K,
    args: (worker: number) => Parameters<HostControl[K]>,
  ): Promise<Answer<K>[]> {
    return Promise.all(this.links.map((_, w) => this.calls.call(w, method, args(w))));
  }

  startStep(start: StepStart): void {
    this.step = start.step;
    this.recorder.mark({ what: 'start', step: start.step }, this.recorder.now());
    for (const link of this.links) link.push({ kind: 'start', ...start });
  }

  send(worker: number, messages: Message[]): void {
    const link = this.links[worker]!;
    for (const m of messages) link.push(m);
  }

  update(u: StepUpdate): void {
    this.recorder.mark({ what: 'update', step: u.step }, this.recorder.now());
    for (const link of this.links) link.push({ kind: 'update', ...u });
  }

  async setParams(values: ReadonlyMap<number, Tensor>): Promise<void> {
    await Promise.all(
      this.links.map((link, w) => {
        // Every copy of a replicated parameter gets the value (Note [parameter placement]).
        const mine = new Map([...values].filter(([id]) => paramWorkers(this.plan, id).includes(w)));
        if (mine.size === 0) return undefined;
        // Copies: the caller keeps its tensors; the copies are handed over.
        const { value, tx } = encodeParams(mine, link.edgeOut);
        return this.calls.call(w, 'setParams', [value], { transfer: tx.list });
      }),
    );
  }

  async getParams(): Promise<Map<number, Tensor>> {
    const lists = await this.all('getParams', () => []);
    const out = new Map<number, Tensor>();
    lists.forEach((list, w) => {
      for (const [id, t] of decodeParams(list, this.links[w]!.edgeIn, this.limits)) out.set(id, t);
    });
    return out;
  }

  /**
   * What every host still waits for. A host that does not answer in time (hung, or busy) is left out
   * and named in `silent`, with what it was last seen doing.
   */
  async waiting(): Promise<WaitingList> {
    const answers = await Promise.allSettled(
      this.links.map((_, w) => this.calls.call(w, 'waiting', [], { timeoutMs: WAITING_TIMEOUT_MS })),
    );
    const entries = answers.flatMap((a, worker) =>
      a.status === 'fulfilled' ? a.value.map((w) => ({ ...w, worker })) : [],
    );
    const silent = answers.flatMap((a, worker) =>
      a.status === 'rejected' ? [{ worker, why: (a.reason as Error).message }] : [],
    );
    return Object.assign(entries, { silent });
  }

  async stats(): Promise<HostStats[]> {
    const stats = await this.all('stats', () => []);
    // Reports of an old generation, dropped here, count against the worker that sent them.
    return stats.map((s, w) => ({
      ...s,
      dropped: s.dropped + this.dropped[w]! + (this.links[w]!.wire.dropped ?? 0),
    }));
  }

  reset(): Promise<number[]> {
    const gen = ++this.gen;
    return this.all('reset', () => [gen]);
  }

  stop(worker: number, death: WorkerError): Promise<void> {
    return this.calls.stop(worker, death);
  }

  async setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void> {
    await this.all('setFailpoints', (w) => [
      failpoints.filter((f) => f.worker === undefined || f.worker === w).map(({ worker: _, ...f }) => f),
    ]);
  }

  async setSchedule(actions: readonly (readonly HostAction[])[] | null): Promise<void> {
    await this.all('setSchedule', (w) => [actions === null ? null : [...(actions[w] ?? [])]]);
  }

  async setOptimizer(spec: OptimizerSpec | null): Promise<void> {
    await this.all('setOptimizer', () => [spec]);
  }

  async getOptimizerState(): Promise<OptimizerCheckpoint> {
    const parts = await this.all('getOptimizerState', () => []);
    return mergeOptimizerStates(parts.map((p, w) => decodeOptimizerState(p, this.links[w]!.edgeIn)));
  }

  /** Each host gets copies of the states of the parameters it holds. */
  async setOptimizerState(state: OptimizerCheckpoint): Promise<void> {
    const names = this.plan.graph.names();
    await Promise.all(
      this.links.map((link, w) => {
        const mine = Object.entries(state.states).filter(([name]) => {
          const id = names.get(name);
          return id === undefined || paramWorkers(this.plan, id).includes(w);
        });
        const { value, tx } = encodeOptimizerState(
          { ...state, states: Object.fromEntries(mine) },
          link.edgeOut,
          true,
        );
        return this.calls.call(w, 'setOptimizerState', [value], { transfer: tx.list });
      }),
    );
  }

  async setAnomalyMode(on: boolean): Promise<void> {
    await this.all('setAnomalyMode', () => [on]);
  }

  async setTracing(on: boolean): Promise<void> {
    await this.all('setTracing', () => [on]);
    this.recorder.enabled = on;
    this.recorder.take();
  }

  async takeTrace(): Promise<WorkerTrace[]> {
    const parts = await this.all('takeTrace', () => []);
    return [...parts, this.recorder.take()];
  }

  /**
   * Stops every host and closes every link; idempotent. Hosts are stopped without asking them to close
   * first: a hung one could not answer.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const link of this.links) link.close();
      await this.calls.close();
    })();
    return this.closing;
  }

  /** For tests: stops host `w` as if from outside; reported as a failure like any death nobody asked for. */
  killWorker(w: number): Promise<void> {
    return this.calls.kill(w);
  }

  /** For tests: posts a raw value (or bytes) on the coordinator's data wire to worker `w`, as a broken envelope. */
  postRaw(w: number, value: unknown, transfer: ArrayBuffer[] = []): void {
    this.links[w]!.postRaw(value, transfer);
  }
}
