import type { Failpoint } from '../actor/failpoint.ts';
import { Host, type HostLimits } from '../actor/host.ts';
import type { StepStart, StepUpdate } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import type { WorkerError } from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { Plan } from '../partition/plan.ts';
import { COORDINATOR, type HostInput } from '../protocol/envelope.ts';
import { Rng } from '../tensor/rng.ts';
import { cast, type Tensor } from '../tensor/tensor.ts';
import type { WorkerTrace } from '../trace/recorder.ts';
import {
  type Cluster,
  type ClusterEvents,
  type ClusterOptions,
  describeStatus,
  IDLE_STATUS,
  mergeOptimizerStates,
  type Stopped,
  sharedThreadHalt,
  type WaitingList,
} from './cluster.ts';
import { HostShell, type Outbox, SLICE_MS } from './host-shell.ts';

interface InFlight {
  readonly worker: number;
  readonly message: HostInput<Tensor>;
  /** The sending worker, or COORDINATOR. */
  readonly from: number;
}

/** Starts and updates keep their order with respect to their host's data: only data is shuffled. */
const isData = (m: HostInput<Tensor>) => m.kind !== 'start' && m.kind !== 'update';

/**
 * All hosts in this thread, messages passed by reference: the same host shells as the other clusters,
 * for debugging and fast tests, without a pool (the hosts share tensors). With `shuffleSeed`, messages
 * in flight are delivered in a seeded random order (order-independence tests). A failpoint that would
 * stop a worker stops its shell, and 'exit' fails the step as a dead worker does.
 */
export class InProcessCluster implements Cluster {
  readonly workers: number;
  private readonly shells: HostShell[];
  private inFlight: InFlight[] = [];
  private head = 0;
  /** Shuffling: the end of the run of data messages from the head (the next start or update), kept as the queue moves. */
  private dataEnd = 0;
  private readonly rng: Rng | null;
  private scheduled = false;
  private closed = false;
  /** Shells stopped at a failpoint: the ones blocked cannot answer (Note [silent hosts] in step.ts). */
  private readonly stopped = new Map<number, Stopped>();

  constructor(
    private readonly plan: Plan,
    events: ClusterEvents,
    options: { shuffleSeed?: number; limits?: HostLimits } = {},
  ) {
    this.workers = plan.workers;
    this.rng = options.shuffleSeed === undefined ? null : new Rng(options.shuffleSeed);
    this.shells = Array.from({ length: plan.workers }, (_, w) => {
      const outbox: Outbox = {
        send: (to, message) => this.queue({ worker: to, message, from: w }),
        report: (m) =>
          m.kind === 'failpoint' ? events.failpoint?.(w, m.action, m.task) : events.report(w, m),
        flush: () => {},
        flushPeers: () => {},
        close: () => {},
      };
      const halt = sharedThreadHalt(plan, w, events, (stopped) => this.stopped.set(w, stopped));
      const host = new Host(
        plan,
        w,
        new Map(),
        options.limits === undefined ? {} : { limits: options.limits },
      );
      return new HostShell(host, outbox, { halt });
    });
  }

  private queue(m: InFlight): void {
    this.inFlight.push(m);
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.deliver();
    });
  }

  /** Delivers messages in flight for up to one time slice (each shell then runs its tasks), then yields. */
  private deliver(): void {
    const until = performance.now() + SLICE_MS;
    while (this.head < this.inFlight.length && !this.closed) {
      // Shuffling swaps a random data message to the head, from the run of data messages before the
      // next start or update: data never crosses one of those, in either direction.
      if (this.rng !== null && isData(this.inFlight[this.head]!.message)) {
        if (this.dataEnd <= this.head) this.dataEnd = this.head + 1;
        while (this.dataEnd < this.inFlight.length && isData(this.inFlight[this.dataEnd]!.message))
          this.dataEnd++;
        const i = this.head + this.rng.int(this.dataEnd - this.head);
        const t = this.inFlight[i]!;
        this.inFlight[i] = this.inFlight[this.head]!;
        this.inFlight[this.head] = t;
      }
      const { worker, message, from } = this.inFlight[this.head++]!;
      if (this.head === this.inFlight.length) {
        this.inFlight = [];
        this.head = 0;
        this.dataEnd = 0;
      }
      this.shells[worker]!.take(message, from);
      if (performance.now() >= until) break;
    }
    if (this.head < this.inFlight.length && !this.closed && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.deliver();
      });
    }
  }

  private toAll(message: HostInput<Tensor>): void {
    for (let w = 0; w < this.workers; w++) this.queue({ worker: w, message, from: COORDINATOR });
  }

  startStep(start: StepStart): void {
    this.toAll({ kind: 'start', ...start });
  }

  send(worker: number, messages: HostInput<Tensor>[]): void {
    for (const message of messages) this.queue({ worker, message, from: COORDINATOR });
  }

  update(u: StepUpdate): void {
    this.toAll({ kind: 'update', ...u });
  }

  /** For tests: worker `w` takes its messages but runs no task while `on` (a deliberately slow consumer). */
  hold(w: number, on: boolean): void {
    this.shells[w]!.hold(on);
  }

  /** For tests: no message in flight, and no host but a held one has a task it may run. */
  quiet(held: readonly number[] = []): boolean {
    return (
      this.head === this.inFlight.length &&
      this.shells.every((s, w) => held.includes(w) || s.host.next() === null)
    );
  }

  private get hosts(): Host[] {
    return this.shells.map((s) => s.host);
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

  async waiting(): Promise<WaitingList> {
    const entries = this.hosts.flatMap((h, worker) => h.waiting().map((w) => ({ ...w, worker })));
    // A blocked shell's host could still be asked here; a blocked thread could not.
    const silent = [...this.stopped]
      .filter(([, s]) => s.death === null)
      .map(([worker, s]) => ({
        worker,
        why: `worker ${worker} did not answer waiting: it is blocked ${describeStatus(this.plan, s.status).text}`,
      }));
    return Object.assign(entries, { silent });
  }

  async stop(worker: number, death: WorkerError): Promise<void> {
    this.stopped.set(worker, { status: this.stopped.get(worker)?.status ?? IDLE_STATUS, death });
    this.shells[worker]!.close();
  }

  async stats() {
    return this.hosts.map((h) => ({ ...h.stats }));
  }

  async reset(): Promise<number[]> {
    this.inFlight = [];
    this.head = 0;
    this.dataEnd = 0;
    for (const h of this.hosts) h.reset();
    return this.hosts.map((h) => h.lastUpdate);
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
    for (const { recorder } of this.shells) {
      recorder.enabled = on;
      recorder.take();
    }
  }

  async takeTrace(): Promise<WorkerTrace[]> {
    return this.shells.map((s) => s.recorder.take());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.inFlight = [];
    this.head = 0;
    this.dataEnd = 0;
    for (const s of this.shells) s.close();
  }
}

export async function createInProcessCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
): Promise<Cluster> {
  return new InProcessCluster(plan, events, {
    limits: options.limits,
    ...(options.shuffleSeed === undefined ? {} : { shuffleSeed: options.shuffleSeed }),
  });
}
