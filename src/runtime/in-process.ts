import type { Failpoint } from '../actor/failpoint.ts';
import { Host, type HostEffect, type Message } from '../actor/host.ts';
import type { StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import { toWireError } from '../actor/wire-error.ts';
import { WorkerError } from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { Plan } from '../partition/plan.ts';
import type { UpdateMessage } from '../protocol/envelope.ts';
import { Rng } from '../tensor/rng.ts';
import { cast, type Tensor } from '../tensor/tensor.ts';
import { TraceRecorder, type WorkerTrace } from '../trace/recorder.ts';
import { type Cluster, type ClusterEvents, mergeOptimizerStates } from './cluster.ts';

const isData = (m: Message | StepStart | UpdateMessage): m is Message =>
  !('shards' in m) && (m as UpdateMessage).kind !== 'update';

/** Milliseconds of work before yielding to the event loop. */
const SLICE_MS = 4;

export interface InProcessOptions {
  /** Deliver in-flight messages in a seeded random order instead of FIFO (order-independence tests). */
  shuffleSeed?: number;
}

/**
 * All hosts in this thread, messages passed by reference: the same host logic as the worker threads,
 * for debugging and fast tests. A simulated worker death ('exit' failpoint) fails the step the same way.
 */
export class InProcessCluster implements Cluster {
  readonly workers: number;
  private readonly hosts: Host[];
  private inFlight: { worker: number; message: Message | StepStart | UpdateMessage; from?: number }[] = [];
  private head = 0;
  private readonly dead = new Set<number>();
  private readonly rng: Rng | null;
  private scheduled = false;
  private closed = false;
  private readonly recorders: TraceRecorder[];

  constructor(
    plan: Plan,
    private readonly events: ClusterEvents,
    options: InProcessOptions = {},
  ) {
    this.workers = plan.workers;
    this.hosts = Array.from({ length: plan.workers }, (_, w) => new Host(plan, w));
    this.recorders = this.hosts.map((_, w) => new TraceRecorder(w));
    this.rng = options.shuffleSeed === undefined ? null : new Rng(options.shuffleSeed);
  }

  startStep(start: StepStart): void {
    for (let w = 0; w < this.workers; w++) this.inFlight.push({ worker: w, message: start });
    this.schedule();
  }

  send(worker: number, messages: Message[]): void {
    for (const message of messages) this.inFlight.push({ worker, message });
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Delivers messages and runs ready tasks for up to one time slice, then yields. */
  private pump(): void {
    const until = performance.now() + SLICE_MS;
    while (performance.now() < until && !this.closed) {
      if (this.head < this.inFlight.length) {
        // Starts and updates keep their order with respect to their host's data, so only data
        // messages are reordered when shuffling (by swapping a random one to the head).
        if (this.rng !== null && isData(this.inFlight[this.head]!.message)) {
          const i = this.head + this.rng.int(this.inFlight.length - this.head);
          const t = this.inFlight[i]!;
          this.inFlight[i] = this.inFlight[this.head]!;
          this.inFlight[this.head] = t;
        }
        const { worker, message, from } = this.inFlight[this.head++]!;
        if (from !== undefined && isData(message) && message.kind !== 'feed') {
          this.recorders[worker]!.received(
            from,
            message.kind,
            'mb' in message ? message.mb : -1,
            message.tensor.bytes,
          );
        }
        if (this.head === this.inFlight.length) {
          this.inFlight = [];
          this.head = 0;
        }
        if (this.dead.has(worker)) continue;
        const host = this.hosts[worker]!;
        this.take(worker, host, message);
        continue;
      }
      let ran = false;
      for (let w = 0; w < this.workers; w++) {
        const task = this.dead.has(w) ? null : this.hosts[w]!.next();
        if (task === null) continue;
        const recorder = this.recorders[w]!;
        const start = recorder.enabled ? recorder.now() : 0;
        const effects = this.hosts[w]!.run();
        if (recorder.enabled) recorder.task(task, start, recorder.now(), this.hosts[w]!.stats.keptBytes);
        this.perform(w, effects);
        ran = true;
      }
      if (!ran) return;
    }
    this.schedule();
  }

  /**
   * A message into a host, as a worker thread takes it: what the host throws fails the step (an
   * update's failure as the update's), never escapes into the event loop.
   */
  private take(worker: number, host: Host, message: Message | StepStart | UpdateMessage): void {
    try {
      if ('shards' in message) this.perform(worker, host.startStep(message));
      else if (message.kind === 'update') this.perform(worker, host.applyUpdate(message));
      else this.perform(worker, host.deliver(message));
    } catch (err) {
      const step = message.step;
      const update = !('shards' in message) && message.kind === 'update';
      const error = toWireError(err, { worker, step, ...(update ? { phase: 'update' as const } : {}) });
      this.events.report(worker, { kind: 'failed', step, error });
    }
  }

  private perform(worker: number, effects: HostEffect[]): void {
    for (const e of effects) {
      if (e.kind === 'send') {
        const m = e.message;
        if (m.kind !== 'feed')
          this.recorders[worker]!.sent(e.worker, m.kind, 'mb' in m ? m.mb : -1, m.tensor.bytes);
        this.inFlight.push({ worker: e.worker, message: m, from: worker });
      } else if (e.kind === 'report') this.events.report(worker, e.report);
      else if (e.action === 'exit' || e.action === 'hang' || e.action === 'pause') {
        // No thread to stop: the host stops taking messages, as if it had died or hung.
        this.dead.add(worker);
        if (e.action === 'pause') this.events.failpoint?.(worker, e.action, e.task);
        if (e.action === 'exit') {
          this.events.failure(
            new WorkerError(
              `worker ${worker} exited unexpectedly (code 0) during the ${e.task.phase} of node %${e.task.node}, microbatch ${e.task.mb}`,
              {
                worker,
                node: e.task.node,
                microbatch: e.task.mb,
                replica: e.task.replica,
                phase: e.task.phase,
                exitCode: 0,
              },
            ),
          );
        }
      }
    }
  }

  async setParams(values: ReadonlyMap<number, Tensor>): Promise<void> {
    // A copy each: hosts update their parameters in place, and a replicated one has a copy per host.
    for (const host of this.hosts)
      for (const id of host.paramIds()) if (values.has(id)) host.setParam(id, cast(values.get(id)!));
  }

  async getParams(): Promise<Map<number, Tensor>> {
    const out = new Map<number, Tensor>();
    // Copies: updates change the hosts' values in place.
    for (const host of this.hosts)
      for (const id of host.primaryParamIds()) out.set(id, cast(host.getParam(id)));
    return out;
  }

  async waiting() {
    return this.hosts.flatMap((h, worker) => h.waiting().map((w) => ({ ...w, worker })));
  }

  async stats() {
    return this.hosts.map((h) => ({ ...h.stats }));
  }

  async reset(): Promise<void> {
    this.inFlight = [];
    this.head = 0;
    for (const h of this.hosts) h.reset();
  }

  async setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void> {
    for (const [w, h] of this.hosts.entries()) {
      h.setFailpoints(failpoints.filter((f) => f.worker === undefined || f.worker === w));
    }
  }

  async setSchedule(actions: readonly (readonly HostAction[])[] | null): Promise<void> {
    for (const [w, h] of this.hosts.entries()) h.setSchedule(actions?.[w] ?? null);
  }

  async setOptimizer(spec: OptimizerSpec | null): Promise<void> {
    for (const h of this.hosts) h.setOptimizer(spec);
  }

  update(u: StepUpdate): void {
    for (let w = 0; w < this.workers; w++)
      this.inFlight.push({ worker: w, message: { kind: 'update', ...u } });
    this.schedule();
  }

  async getOptimizerState(): Promise<OptimizerCheckpoint> {
    return mergeOptimizerStates(this.hosts.map((h) => h.getOptimizerState()));
  }

  async setOptimizerState(state: OptimizerCheckpoint): Promise<void> {
    for (const h of this.hosts) h.setOptimizerState(state);
  }

  async setAnomalyMode(on: boolean): Promise<void> {
    for (const h of this.hosts) h.setAnomalyMode(on);
  }

  async setTracing(on: boolean): Promise<void> {
    for (const r of this.recorders) {
      r.enabled = on;
      r.take();
    }
  }

  async takeTrace(): Promise<WorkerTrace[]> {
    return this.recorders.map((r) => r.take());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.inFlight = [];
    this.head = 0;
  }
}
