import { InputError } from '../errors.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { Plan } from '../partition/plan.ts';
import { LiveBuffers } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { tensorEngine, type ValueEngine } from './engine.ts';
import { afterTask, beforeTask, type Failpoint, taskFailpoint } from './failpoint.ts';
import { FlowControl } from './flow-control.ts';
import { HostBudget } from './host-budget.ts';
import { type HostPhase, transition } from './host-phase.ts';
import type { HostEffect, HostOptions, HostStats, Message, TaskInfo, WaitingEntry } from './host-types.ts';
import { ShardTables } from './kept-source.ts';
import type { Credit, LossReport, StepStart, StepUpdate } from './messages.ts';
import { Outbox } from './outbox.ts';
import { ParamSide } from './param-side.ts';
import { Router } from './router.ts';
import { StepArena } from './step-arena.ts';
import type { HostAction, TaskPhase, TaskQueue } from './task-queue.ts';
import { TaskRunner, taskFailure } from './task-runner.ts';
import { waitingEntries } from './waiting.ts';
import { toWireError } from './wire-error.ts';

export type {
  HostEffect,
  HostLimits,
  HostOptions,
  HostSettings,
  HostStats,
  Message,
  Task,
  TaskInfo,
  WaitingEntry,
} from './host-types.ts';

/**
 * One worker's actors and mailbox: pure logic, events in and effects out. The shell (a worker thread,
 * the in-process cluster, or the simulator) calls `startStep`, `deliver`, and `next`/`run` in a loop,
 * and performs the effects. Messages between this host's own actors never leave it and are never
 * serialized. Which ready task runs next is the task queue's business: in dataflow order, or in the
 * order of a pipeline schedule's actions for this worker.
 *
 * The host runs tasks and orders the step's events by its phase (host-phase.ts); the router moves
 * values and contributions between actors and workers, the parameter side holds the parameters and
 * their update, and the step arena gives the step's storages back to the thread's pool.
 */
export class Host<T = Tensor> {
  readonly worker: number;
  readonly plan: Plan;
  readonly engine: ValueEngine<T>;
  /** The ready tasks, and which one runs next. */
  readonly queue: TaskQueue<T>;
  private readonly counters: HostStats = zeroStats();
  private readonly router: Router<T>;
  private readonly tasks: TaskRunner<T>;
  private readonly params: ParamSide<T>;
  private readonly arena: StepArena<T>;
  private readonly out: Outbox<T>;
  private readonly flow: FlowControl;
  private readonly budget: HostBudget;
  private phase: HostPhase = 'idle';
  /** In 'update-pending': the update waiting for gradients; in 'update-pending-start', the start behind it. */
  private pendingUpdate: StepUpdate | null = null;
  private pendingStart: StepStart | null = null;
  private step = -1;
  /** The step of the last update this host applied (-1: none yet). */
  lastUpdate = -1;
  /** The step whose parameter values this host sent as its last update ran (Note [parameters sent with the update]). */
  private paramsSent = -1;
  /** Messages for a later step, delivered when it starts. */
  private early: (Message<T> | LossReport)[] = [];
  private failpoints: Failpoint[] = [];

  constructor(
    plan: Plan,
    worker: number,
    params: ReadonlyMap<number, T> = new Map(),
    ...[options]: HostOptions<T>
  ) {
    this.plan = plan;
    this.worker = worker;
    // The host's one cast: without an engine T is Tensor (HostOptions demands one otherwise), which
    // TypeScript cannot narrow inside the generic class.
    this.engine = options?.engine ?? (tensorEngine as unknown as ValueEngine<T>);
    this.arena = new StepArena(options?.pool ?? null, this.engine);
    this.out = new Outbox(this.engine, this.counters);
    const kept = (effects: HostEffect<T>[]) => this.gradientKept(effects);
    this.params = new ParamSide(plan, worker, this.engine, this.counters, this.out, params, kept);
    const limits = options?.limits;
    this.flow = new FlowControl(plan, worker, limits?.flow ?? null, this.counters);
    this.budget = new HostBudget(
      plan,
      worker,
      limits?.memoryBytes ?? Number.POSITIVE_INFINITY,
      this.counters,
    );
    this.router = new Router(plan, worker, this.engine, this.counters, this.out, this.params, this.flow);
    this.queue = this.router.queue;
    // Note [activation credits]: a forward waits while a channel it sends on is full.
    if (this.flow.settings !== null) this.queue.gate = (task) => this.flow.allows(task);
    const shards = options?.shards ?? new ShardTables();
    this.tasks = new TaskRunner(plan, this.engine, this.counters, this.out, this.router, shards, this.flow);
  }

  /** The host's counters (the pool's and the live bytes read now). */
  get stats(): HostStats {
    this.arena.count(this.counters);
    this.budget.live();
    return this.counters;
  }

  /** The parameters this host holds (a copy of, when they are replicated). */
  paramIds(): number[] {
    return this.params.ids();
  }

  /** The parameters whose copy here is the one that reports: what a read of the parameters takes from this host. */
  primaryParamIds(): number[] {
    return this.params.primaryIds();
  }

  setParam(node: number, value: T): void {
    this.params.set(node, value);
  }

  getParam(node: number): T {
    return this.params.get(node);
  }

  setFailpoints(failpoints: readonly Failpoint[]): void {
    this.failpoints = [...failpoints];
  }

  /**
   * Runs `spec` on this host's parameters: a closed gradient stays here (its sum of squares is
   * reported instead), and `applyUpdate` applies it. Null: gradients are reported.
   */
  setOptimizer(spec: OptimizerSpec | null): void {
    this.params.setOptimizer(spec);
  }

  /** The optimizer's state of the owned parameters, as copies (for checkpoints). */
  getOptimizerState(): OptimizerCheckpoint {
    return this.params.getOptimizerState();
  }

  setOptimizerState(checkpoint: OptimizerCheckpoint): void {
    this.params.setOptimizerState(checkpoint);
  }

  /** Anomaly mode: report the first non-finite value each task makes (forward outputs, contributions). */
  setAnomalyMode(on: boolean): void {
    this.tasks.anomalies = on;
  }

  /** Follows a pipeline schedule's actions for this worker from the next step on (null: dataflow order). */
  setSchedule(actions: readonly HostAction[] | null): void {
    this.queue.setSchedule(actions);
  }

  /**
   * Starts a step: forgets the last one, and hands every parameter's value to its consumers. A start
   * that arrives while the last step's update waits for gradients waits behind it.
   */
  startStep(start: StepStart): HostEffect<T>[] {
    const { phase, action } = transition(this.phase, 'start');
    if (action === 'park') {
      this.phase = phase;
      this.pendingStart = start;
      // A local decision whose inputs are all here runs first (it runs the start after it).
      return this.decisionReady() ? this.decide() : [];
    }
    // Note [parameters sent with the update]: the other hosts have this step's values already.
    const sent = this.paramsSent === start.step;
    this.reset();
    this.phase = phase;
    this.step = start.step;
    // Note [inference steps]: forward only, in dataflow order, no gradient expected.
    const training = start.outputs === undefined;
    this.params.begin(training ? start : null);
    if (this.params.decidesUpdate) this.phase = 'running-local';
    this.router.start(start.microbatches, training);
    this.tasks.start(start);
    this.flow.start(start.microbatches, (id, replica) => this.tasks.bytesOf(id, replica, 0));
    this.budget.start();
    const effects: HostEffect<T>[] = [];
    this.params.forget();
    // The last step is over (updated, reported or failed): before this one makes anything.
    this.recycle(true);
    for (const param of this.params.all()) {
      if (training) this.params.start(param, start, effects);
      this.router.handOut(param, this.step, effects, !sent);
    }
    this.router.readyAtStart();
    const early = this.early;
    this.early = [];
    for (const m of early) effects.push(...this.deliver(m));
    return effects;
  }

  /**
   * Applies step `u.step`'s update to every parameter held here, in place (Note [deferred update] in
   * src/runtime/deferred-update.ts), and acknowledges it; a failure is reported as the update's
   * (phase 'update'). The copy of a replicated parameter may still wait for another replica's
   * contributions (they travel on another port than the update): then the update waits for them.
   * A second update for the step (a duplicated message) is dropped, not applied or parked.
   */
  applyUpdate(u: StepUpdate): HostEffect<T>[] {
    if (u.step !== this.step) {
      throw new InputError(`host ${this.worker}: an update for step ${u.step} during step ${this.step}`, {
        expected: this.step,
        found: u.step,
      });
    }
    const { phase, action } = transition(this.phase, this.params.ready() ? 'update' : 'early-update');
    this.phase = phase;
    if (action === 'drop') {
      this.counters.dropped++;
      return [];
    }
    if (action === 'park') {
      this.pendingUpdate = u;
      return [];
    }
    return this.update(u);
  }

  /** A gradient was kept for the update: the last one a pending update waits for lets it run. */
  private gradientKept(effects: HostEffect<T>[]): void {
    const u = this.pendingUpdate;
    if (u === null || !this.params.ready()) return;
    const { phase, action } = transition(this.phase, 'gradients');
    this.phase = phase;
    if (action === 'run') effects.push(...this.update(u));
  }

  /** Whether a gradient this host reports is still open this step (Note [report cadence] in host-shell.ts). */
  reportsOpen(): boolean {
    return this.params.reportsOpen;
  }

  /**
   * Whether this host decides the step's update itself and every gradient and loss it needs is in
   * (Note [local update]): the shell then sends what is queued and calls `decide`.
   */
  decisionReady(): boolean {
    return (
      (this.phase === 'running-local' || this.phase === 'update-pending-start') && this.params.decisionReady()
    );
  }

  /**
   * Decides the step's update here (Note [local update]): applies and acknowledges it when the step is
   * finite, else drops its gradients; then runs the start that waited behind it. A failure is reported
   * as the update's (phase 'update').
   */
  decide(): HostEffect<T>[] {
    const { phase, action } = transition(this.phase, 'decide');
    this.phase = phase;
    if (action !== 'run') return [];
    return this.update(null);
  }

  // Note [parameters sent with the update]
  // A parameter placed once (sharded, replica-0) is handed to the other replicas' hosts each step,
  // and a host that reads it cannot start its forward before the value arrives: on the MNIST MLP the
  // owner of the first weight (85% of the parameters) copied and sent it as it took the next start,
  // and the other host's forward waited for that hop. The value a step reads is the one its update
  // left, so the owner sends it, tagged with the next step, as soon as the update has run; the update
  // travels ahead of the next start (Note [deferred update]), so the copy and the hop overlap the
  // coordinator's way from the update to the next start. The receiver keeps it as a message of a
  // later step until that start. Steps are numbered in the order the coordinator starts them, so the
  // next start is the next step, or a later one when a step failed before it started: then the
  // value, a message of an earlier step, is dropped, and the owner, whose start is not the step it
  // sent for, hands its values out as the step starts, as it does after a reset.

  /** Runs an update (the phase is 'updated' now; null: this host's own decision), then the step start that waited behind it. */
  private update(u: StepUpdate | null): HostEffect<T>[] {
    this.pendingUpdate = null;
    const effects: HostEffect<T>[] = [];
    const step = u?.step ?? this.step;
    try {
      const applied = u === null ? this.params.decide(step, this.failpoints) : true;
      if (u !== null) this.params.update(u, this.failpoints);
      if (applied) {
        this.lastUpdate = step;
        // The step is over: its storages go back to the pool.
        this.recycle(false);
        effects.push({ kind: 'report', report: { kind: 'updated', step } });
        for (const param of this.params.all()) this.router.sendParam(param, step + 1, effects);
        this.paramsSent = step + 1;
      }
    } catch (err) {
      this.params.forget();
      const error = toWireError(err, { worker: this.worker, step, phase: 'update' });
      effects.push({ kind: 'report', report: { kind: 'failed', step, error } });
    }
    const start = this.pendingStart;
    this.pendingStart = null;
    if (start !== null) effects.push(...this.startStep(start));
    return effects;
  }

  /** Drops everything held for the current step (after a failure, or before the next step). */
  reset(): void {
    this.phase = transition(this.phase, 'reset').phase;
    this.paramsSent = -1;
    this.pendingUpdate = null;
    this.pendingStart = null;
    this.router.reset();
    this.params.reset();
    this.tasks.reset();
    this.counters.keptBytes = 0;
    this.counters.peakKeptBytes = 0;
    this.counters.queuedBytes = 0;
    this.counters.sentBytes = 0;
    this.counters.receivedBytes = 0;
  }

  /** The host's memory budget in bytes (Note [memory budget]); Infinity: none. */
  get memoryLimit(): number {
    return this.budget.limit;
  }

  /** Memory pressure mid-step: the step's dead storages back to the pool, free ones let go (Note [step arena]). */
  relieve(): void {
    this.arena.relieve(this.budget.limit, (minBytes) => this.liveBuffers(minBytes));
  }

  /** Gives the storages of the finished step back to the pool (Note [step arena]). */
  private recycle(stepStarts: boolean): void {
    this.arena.recycle(stepStarts, (minBytes) => this.liveBuffers(minBytes));
  }

  /** The buffers of every pooled-size value this host still references (Note [step arena]). */
  liveBuffers(minBytes: number): LiveBuffers {
    const live = new LiveBuffers(minBytes);
    const add = (v: T | undefined | null) => {
      if (v !== undefined && v !== null) live.add(this.engine.storage(v));
    };
    this.params.held(live, add);
    for (const a of this.router.actors) a.held(add);
    for (const m of this.early) if (m.kind !== 'loss') add(m.tensor);
    this.queue.values(add);
    return live;
  }

  /**
   * A message from the coordinator or another host (a shard's loss from another host: Note [local
   * update]). Returns the reports it closes (a parameter's gradient).
   */
  deliver(m: Message<T> | LossReport): HostEffect<T>[] {
    const effects: HostEffect<T>[] = [];
    if (m.step !== this.step) {
      if (m.step > this.step) this.early.push(m);
      else this.counters.dropped++;
      return effects;
    }
    if (m.kind === 'loss') {
      if (!this.params.lossKnown(m.replica, m.mb, m.value)) this.counters.dropped++;
      return effects;
    }
    // The step's to give back when it is over (Note [step arena]); never an early message's.
    this.arena.track(m.tensor);
    if (m.kind !== 'feed') this.counters.receivedBytes += this.engine.bytes(m.tensor);
    if (m.kind === 'param') this.budget.paramArrived(this.engine.bytes(m.tensor));
    this.router.deliver(m, effects);
    return effects;
  }

  /**
   * Worker `from` consumed a microbatch of a stage's activations (Note [activation credits]): forwards
   * waiting for the window may start. A credit of an earlier step (the last ones may arrive after
   * the next start) is ignored; one of a later step is dropped and counted.
   */
  credit(from: number, c: Credit): void {
    if (c.step !== this.step) {
      if (c.step > this.step) this.counters.dropped++;
      return;
    }
    if (this.flow.credit(from, c.stage, c.mb)) this.queue.release();
  }

  /**
   * The task to run next, or null when nothing may run now. In dataflow order backward tasks go first:
   * they free what the forward kept. Results never depend on the order.
   */
  next(): TaskInfo | null {
    return this.phase === 'failed' ? null : this.queue.peek();
  }

  /** Bytes the task `next()` returned makes: its output, or its part of the VJP's contributions (0: none). */
  nextBytes(): number {
    const task = this.phase === 'failed' ? null : this.queue.peek();
    return task === null ? 0 : this.tasks.outputBytes(task);
  }

  /** Runs the task `next()` returned, and returns its effects. */
  run(): HostEffect<T>[] {
    const task = this.queue.take();
    const effects: HostEffect<T>[] = [];
    if (task === null) return effects;
    const fp = this.failpoints.length > 0 ? taskFailpoint(this.failpoints, task, this.step) : undefined;
    try {
      if (fp !== undefined && !beforeTask(fp, task, effects)) return effects;
      // Note [memory budget]: the task's output must fit before it is made.
      if (this.budget.limit !== Number.POSITIVE_INFINITY)
        this.budget.check(this.plan, task, this.tasks.outputBytes(task), this.step);
      this.counters.tasks++;
      this.tasks.run(task, this.step, effects);
      if (this.params.decidesUpdate) this.shareLosses(effects);
      this.queue.done(task);
      return fp === undefined ? effects : afterTask(fp, effects);
    } catch (err) {
      this.phase = transition(this.phase, 'task-failed').phase;
      effects.push(taskFailure(err, task, this.worker, this.step));
      return effects;
    }
  }

  /**
   * Note [local update]: a loss this host's task reported counts towards its own decision, and goes
   * to every other host, which decides too.
   */
  private shareLosses(effects: HostEffect<T>[]): void {
    const n = effects.length;
    for (let i = 0; i < n; i++) {
      const e = effects[i]!;
      if (e.kind !== 'report' || e.report.kind !== 'loss') continue;
      const loss = e.report;
      this.params.lossKnown(loss.replica, loss.mb, loss.value);
      for (let w = 0; w < this.plan.workers; w++)
        if (w !== this.worker) effects.push({ kind: 'loss', worker: w, loss });
    }
  }

  /** What every actor of this host is still waiting for in the current step (for timeout errors). */
  waiting(): WaitingEntry[] {
    return waitingEntries(this.plan, this.plan.grad.cells, this.router.everyActor(), this.params.all());
  }
}

function zeroStats(): HostStats {
  return {
    tasks: 0,
    localMessages: 0,
    remoteMessages: 0,
    copies: 0,
    dropped: 0,
    keptBytes: 0,
    peakKeptBytes: 0,
    queuedBytes: 0,
    peakQueuedBytes: 0,
    liveBytes: 0,
    peakLiveBytes: 0,
    paramBytes: 0,
    optimizerBytes: 0,
    sentBytes: 0,
    receivedBytes: 0,
    poolHits: 0,
    poolMisses: 0,
    pooledBytes: 0,
    recycledBytes: 0,
  };
}

export type { HostAction, TaskPhase };
