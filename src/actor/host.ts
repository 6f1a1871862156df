import type { Bindings } from '../autodiff/forward.ts';
import type { GradientCells } from '../autodiff/plan.ts';
import { runVjp } from '../autodiff/vjp.ts';
import { InputError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import { edgeGradient, type Plan } from '../partition/plan.ts';
import { LiveBuffers, type StoragePool } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { tensorEngine, type ValueEngine } from './engine.ts';
import { type Failpoint, FailpointError } from './failpoint.ts';
import type {
  HostEffect,
  HostOptions,
  HostStats,
  Message,
  Task,
  TaskInfo,
  WaitingEntry,
} from './host-types.ts';
import { KeptSource, type ShardTable, ShardTables } from './kept-source.ts';
import type { StepStart, StepUpdate } from './messages.ts';
import { NodeActor } from './node-actor.ts';
import { ParamActor } from './param-actor.ts';
import { NoUpdates, type Updates } from './param-updates.ts';
import { type HostAction, type TaskPhase, TaskQueue } from './task-queue.ts';
import { waitingEntries } from './waiting.ts';
import { toWireError } from './wire-error.ts';

export type {
  HostEffect,
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
 */
export class Host<T = Tensor> {
  readonly worker: number;
  readonly plan: Plan;
  readonly engine: ValueEngine<T>;
  private readonly counters: HostStats = {
    tasks: 0,
    localMessages: 0,
    remoteMessages: 0,
    copies: 0,
    dropped: 0,
    keptBytes: 0,
    peakKeptBytes: 0,
    paramBytes: 0,
    optimizerBytes: 0,
    sentBytes: 0,
    receivedBytes: 0,
    poolHits: 0,
    poolMisses: 0,
    pooledBytes: 0,
    recycledBytes: 0,
  };
  private readonly pool: StoragePool | null;
  /** Actors by replica * nodes + node (dense: the hot lookups are an index, not a hash). */
  private readonly actors: (NodeActor<T> | undefined)[];
  private readonly actorList: NodeActor<T>[] = [];
  private readonly params = new Map<number, ParamActor<T>>();
  /** The parameters held here that get a gradient (in `wrt`): what the optimizer updates. */
  private readonly trainable = new Map<number, ParamActor<T>>();
  /** The workers holding a copy of each parameter that has more than one. */
  private paramCopies: Map<number, readonly number[]> | null = null;
  /** An update waiting for contributions, and a step start waiting for that update (applyUpdate). */
  private pendingUpdate: StepUpdate | null = null;
  /** The step whose update ran last (a duplicate of it is dropped). */
  private updatedStep = -1;
  private deferredStart: StepStart | null = null;
  readonly queue: TaskQueue<T>;
  private step = -1;
  private microbatches = 0;
  private shards: ShardTable = [];
  private readonly shardTables: ShardTables;
  private early: Message<T>[] = [];
  private failed = false;
  private failpoints: Failpoint[] = [];
  private current: Task<T> | null = null;
  /** The optimizer of the parameters this host owns, their states, and the step's pending update. */
  private readonly updates: Updates<T>;
  private anomalies = false;
  /** Where every contribution goes (Note [gradient cells]). */
  private readonly cells: GradientCells;
  /** Where a VJP finds its saved values and bound shapes: one object, refilled per task (a hot path). */
  private readonly vjpSource: KeptSource<T>;

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
    this.pool = options?.pool ?? null;
    this.shardTables = options?.shards ?? new ShardTables();
    const { graph, grad, placement } = plan;
    this.cells = plan.grad.cells;
    // Where every replicated parameter's contributions go, whoever makes them (Note [parameter placement]).
    for (const id of plan.params) {
      const copies = plan.paramWorkers.get(id)!;
      if (copies.length > 1) (this.paramCopies ??= new Map()).set(id, copies);
    }
    const nameOf = (id: number) => label(graph.nodes[id]!);
    this.updates = this.engine.updates?.(worker, nameOf) ?? new NoUpdates(worker);
    this.vjpSource = new KeptSource<T>(graph.nodes);
    this.actors = new Array(graph.size * plan.replicas);
    const constant = (id: number) => this.engine.constant(graph.nodes[id]!);
    for (let r = 0; r < plan.replicas; r++) {
      const p = placement[r]!;
      for (const node of graph.nodes) {
        if (p[node.id] !== worker || node.op === 'const') continue;
        if (node.op === 'param') {
          // One actor per copy here (Note [parameter placement]); replica 0's copy reports.
          if (!this.params.has(node.id)) {
            const value = params.get(node.id) ?? this.engine.zeros(node.shape as number[], node.dtype);
            const primary = placement[0]![node.id] === worker;
            const actor = new ParamActor(node.id, value, grad.expected[node.id]!, primary);
            this.params.set(node.id, actor);
            if (plan.params.includes(node.id)) this.trainable.set(node.id, actor);
          }
          continue;
        }
        const needs = node.inputs.map((_, s) => edgeGradient(plan, node.id, s));
        const actor = new NodeActor<T>(plan, node, r, needs, constant);
        this.actors[this.key(node.id, r)] = actor;
        this.actorList.push(actor);
      }
    }
    this.queue = new TaskQueue(this.actorList);
  }

  /** The host's counters (the pool's read now). */
  get stats(): HostStats {
    const pool = this.pool;
    if (pool !== null) {
      const c = this.counters;
      c.poolHits = pool.hits;
      c.poolMisses = pool.misses;
      c.pooledBytes = pool.pooledBytes;
      c.recycledBytes = pool.recycledBytes;
    }
    return this.counters;
  }

  private key(node: number, replica: number): number {
    return replica * this.plan.graph.size + node;
  }

  private actor(node: number, replica: number): NodeActor<T> {
    return this.actors[replica * this.plan.graph.size + node]!;
  }

  /** The parameters this host holds (a copy of, when they are replicated). */
  paramIds(): number[] {
    return [...this.params.keys()];
  }

  /** The parameters whose copy here is the one that reports: what a read of the parameters takes from this host. */
  primaryParamIds(): number[] {
    return [...this.params.values()].filter((p) => p.primary).map((p) => p.node);
  }

  setParam(node: number, value: T): void {
    const p = this.params.get(node);
    if (p === undefined) throw new InputError(`host ${this.worker} does not own parameter %${node}`);
    this.engine.share(value);
    p.value = value;
    this.countBytes();
  }

  /** Counts the bytes of the owned parameters and their optimizer state (tensor bytes per worker). */
  private countBytes(): void {
    let bytes = 0;
    for (const p of this.params.values()) bytes += this.engine.bytes(p.value);
    this.counters.paramBytes = bytes;
    this.counters.optimizerBytes = this.updates.stateBytes();
  }

  getParam(node: number): T {
    const p = this.params.get(node);
    if (p === undefined) throw new InputError(`host ${this.worker} does not own parameter %${node}`);
    return p.value;
  }

  setFailpoints(failpoints: readonly Failpoint[]): void {
    this.failpoints = [...failpoints];
  }

  /**
   * Runs `spec` on this host's parameters: a closed gradient stays here (its sum of squares is
   * reported instead), and `applyUpdate` applies it. Null: gradients are reported.
   */
  setOptimizer(spec: OptimizerSpec | null): void {
    this.updates.set(spec);
  }

  /**
   * Applies step `u.step`'s update to every parameter held here, in place (Note [deferred update] in
   * src/runtime/runtime.ts), and acknowledges it; a failure is reported as the update's (phase
   * 'update'). The copy of a replicated parameter may still wait for another replica's contributions
   * (they travel on another port than the update): then the update waits for them, and so does a
   * step start that arrives meanwhile.
   */
  applyUpdate(u: StepUpdate): HostEffect<T>[] {
    if (u.step !== this.step) {
      throw new InputError(`host ${this.worker}: an update for step ${u.step} during step ${this.step}`, {
        expected: this.step,
        found: u.step,
      });
    }
    // A second update for the step (a duplicated message) is dropped, not applied or parked.
    if (this.updatedStep === u.step || this.pendingUpdate !== null) {
      this.counters.dropped++;
      return [];
    }
    if (!this.updates.ready(this.trainable)) {
      this.pendingUpdate = u;
      return [];
    }
    return this.update(u);
  }

  private update(u: StepUpdate): HostEffect<T>[] {
    this.pendingUpdate = null;
    this.updatedStep = u.step;
    const fp = this.failpoints.find(
      (f) =>
        f.phase === 'update' &&
        f.action === 'throw' &&
        (f.step === undefined || f.step === u.step) &&
        this.ownsParam(f.node),
    );
    const effects: HostEffect<T>[] = [];
    try {
      if (fp !== undefined) throw new FailpointError(`failpoint: update of ${fp.node}`, { phase: 'update' });
      this.updates.apply(this.trainable, u.lr, u.scale);
      this.countBytes();
      // The step is over: its storages go back to the pool.
      this.recycle();
      effects.push({ kind: 'report', report: { kind: 'updated', step: u.step } });
    } catch (err) {
      this.updates.clear();
      const error = toWireError(err, { worker: this.worker, step: u.step, phase: 'update' });
      effects.push({ kind: 'report', report: { kind: 'failed', step: u.step, error } });
    }
    const start = this.deferredStart;
    this.deferredStart = null;
    if (start !== null) effects.push(...this.startStep(start));
    return effects;
  }

  private ownsParam(node: number | string): boolean {
    const id = typeof node === 'number' ? node : this.plan.graph.names().get(node);
    return id !== undefined && this.params.has(id);
  }

  /** The optimizer's state of the owned parameters, as copies (for checkpoints). */
  getOptimizerState(): OptimizerCheckpoint {
    return this.updates.getState();
  }

  setOptimizerState(checkpoint: OptimizerCheckpoint): void {
    this.updates.setState(this.params, checkpoint);
    this.countBytes();
  }

  /** Anomaly mode: report the first non-finite value each task makes (forward outputs, contributions). */
  setAnomalyMode(on: boolean): void {
    this.anomalies = on;
  }

  /** Follows a pipeline schedule's actions for this worker from the next step on (null: dataflow order). */
  setSchedule(actions: readonly HostAction[] | null): void {
    this.queue.setSchedule(actions);
  }

  /** Starts a step: forgets the last one, and hands every parameter's value to its consumers. */
  startStep(start: StepStart): HostEffect<T>[] {
    // The last step's update waits for contributions still on their way (see applyUpdate).
    if (this.pendingUpdate !== null) {
      this.deferredStart = start;
      return [];
    }
    this.reset();
    this.step = start.step;
    this.microbatches = start.microbatches;
    this.queue.start(start.microbatches);
    for (const a of this.actorList) a.start(start.microbatches);
    this.shards = this.shardTables.of(start);
    const effects: HostEffect<T>[] = [];
    this.updates.clear();
    // The last step is over (updated, reported or failed): before this one makes anything.
    this.recycle(true);
    for (const param of this.params.values()) {
      param.start(start.microbatches, this.plan.replicas);
      if (param.closed && this.updates.active && this.trainable.has(param.node)) {
        // Not connected to the loss: a zero gradient, so the optimizer still steps it (as the reference does).
        const node = this.plan.graph.nodes[param.node]!;
        this.updates.keep(param.node, this.engine.zeros(node.shape as number[], node.dtype));
        if (param.primary)
          effects.push({
            kind: 'report',
            report: { kind: 'gradNorm', step: start.step, node: param.node, sumsq: 0 },
          });
      }
      // The consumers of the replicas this copy serves (all of them for a parameter placed once).
      const remote = new Set<number>();
      for (let r = 0; r < this.plan.replicas; r++) {
        if (this.plan.placement[r]![param.node] !== this.worker) continue;
        for (const [c, slot] of this.plan.consumers[param.node]!) {
          const w = this.plan.placement[r]![c]!;
          if (w === this.worker) this.receiveParamInput(this.actor(c, r), slot, param.value);
          else remote.add(w);
        }
      }
      for (const w of remote) {
        effects.push(
          this.remote(w, {
            kind: 'param',
            step: this.step,
            node: param.node,
            tensor: this.copy(param.value),
          }),
        );
      }
    }
    // Note [fixed-input nodes]: nodes fed only by constants fire now.
    for (const a of this.actorList) {
      if (a.fixedOnly) for (const mb of a.readyAtStart()) this.readyForward(a, mb);
    }
    const early = this.early;
    this.early = [];
    for (const m of early) effects.push(...this.deliver(m));
    return effects;
  }

  /** Drops everything held for the current step (after a failure, or before the next step). */
  reset(): void {
    this.pendingUpdate = null;
    this.deferredStart = null;
    for (const a of this.actorList) a.reset();
    for (const p of this.params.values()) p.reset();
    this.queue.clear();
    this.shards = [];
    this.failed = false;
    this.current = null;
    this.counters.keptBytes = 0;
    this.counters.peakKeptBytes = 0;
    this.counters.sentBytes = 0;
    this.counters.receivedBytes = 0;
  }

  // Note [step arena]
  // On a worker, the storages of a step's tensors go back to the thread's pool (Note [storage pool])
  // when the step is over on this host: at the start of the next step (after `reset`, before anything
  // of the new step is made or an early message is delivered) and right after its update. What goes
  // back is what the pool's arena recorded (the thread's pooled-size allocations, and what this host
  // was delivered for its current step), minus what is still live. The live set is computed then,
  // from the owners, never from bookkeeping at creation: parameter values, optimizer states, kept
  // gradients (`ParamUpdates.held`), what the actors still hold (constants, the
  // parameters of other hosts in `fixed`, per-microbatch inputs, kept values, contributions) and what
  // the parameter actors still sum, and messages kept for a later step. A storage that was
  // transferred away is detached and forgotten. A live storage stays recorded and is looked at again
  // the next time (a parameter value is given back once `setParams` replaces it). The shell must
  // have sent what it queued before a recycle (a queued transfer is not detached yet): it flushes its
  // links before `startStep` and `applyUpdate`. A storage is recorded when it is delivered, not when
  // it is decoded: an envelope's later messages are decoded before its step start is handled, so the
  // envelope reader must not take their storages from the pool (it copies small tensors with `slice`).

  /** Gives the storages of the finished step back to the pool (Note [step arena]). */
  private recycle(stepStarts = false): void {
    const pool = this.pool;
    if (pool === null) return;
    pool.recycle(pool.arenaSize === 0 ? EMPTY : this.liveBuffers(pool.minBytes).buffers, stepStarts);
  }

  /** The buffers of every pooled-size value this host still references (Note [step arena]). */
  liveBuffers(minBytes: number): LiveBuffers {
    const live = new LiveBuffers(minBytes);
    const add = (v: T | undefined | null) => {
      if (v !== undefined && v !== null) live.add(this.engine.storage(v));
    };
    for (const p of this.params.values()) {
      add(p.value);
      p.held(add);
    }
    this.updates.held(live);
    for (const a of this.actorList) a.held(add);
    for (const m of this.early) add(m.tensor);
    return live;
  }

  /** A message from the coordinator or another host. Returns the reports it closes (a parameter's gradient). */
  deliver(m: Message<T>): HostEffect<T>[] {
    const effects: HostEffect<T>[] = [];
    if (m.step !== this.step) {
      if (m.step > this.step) this.early.push(m);
      else this.counters.dropped++;
      return effects;
    }
    // The step's to give back when it is over (Note [step arena]); never an early message's.
    if (this.pool !== null) {
      const storage = this.engine.storage(m.tensor);
      if (storage !== null) this.pool.track(storage);
    }
    if (m.kind !== 'feed') this.counters.receivedBytes += this.engine.bytes(m.tensor);
    const { consumers, placement } = this.plan;
    switch (m.kind) {
      case 'feed': {
        const actor = this.actors[this.key(m.node, m.replica)];
        if (actor === undefined)
          throw new InputError(`host ${this.worker}: no input actor %${m.node} of replica ${m.replica}`);
        this.ready(actor, 'forward', m.mb, m.tensor);
        break;
      }
      case 'activation': {
        this.engine.share(m.tensor);
        const edges = consumers[m.node]!;
        const p = placement[m.replica]!;
        for (let k = 0; k < edges.length; k++) {
          const [c, slot] = edges[k]!;
          if (p[c] !== this.worker) continue;
          const actor = this.actor(c, m.replica);
          if (actor.hasInput(m.mb, slot)) this.counters.dropped++;
          else if (actor.receiveInput(m.mb, slot, m.tensor)) this.readyForward(actor, m.mb);
        }
        break;
      }
      case 'param':
        this.engine.share(m.tensor);
        for (let r = 0; r < this.plan.replicas; r++) {
          for (const [c, slot] of consumers[m.node]!) {
            if (placement[r]![c] !== this.worker) continue;
            const actor = this.actor(c, r);
            if (actor.hasParam(slot)) this.counters.dropped++;
            else this.receiveParamInput(actor, slot, m.tensor);
          }
        }
        break;
      case 'gradient':
        this.receiveGradient(m.node, m.replica, m.mb, m.consumer, m.slot, m.tensor, effects);
        break;
    }
    return effects;
  }

  private receiveParamInput(actor: NodeActor<T>, slot: number, value: T): void {
    for (const mb of actor.receiveParam(slot, value)) this.readyForward(actor, mb);
  }

  private readyForward(actor: NodeActor<T>, mb: number): void {
    this.ready(actor, 'forward', mb);
  }

  private readyBackward(actor: NodeActor<T>, mb: number): void {
    this.ready(actor, 'backward', mb);
  }

  /** A task becomes ready (`value`: an input node's fed value). One object shape for every task. */
  private ready(actor: NodeActor<T>, phase: 'forward' | 'backward', mb: number, value?: T): void {
    const { node, stage, replica } = actor;
    this.queue.ready({ phase, node: node.id, stage, replica, mb, actor, value });
  }

  /** The contribution of input `slot` of `consumer` to `node`'s gradient. */
  private receiveGradient(
    node: number,
    replica: number,
    mb: number,
    consumer: number,
    slot: number,
    value: T,
    effects: HostEffect<T>[],
  ): void {
    this.engine.share(value);
    const cell = this.cells.cell[this.cells.slotBase[consumer]! + slot]!;
    // Actors first: an array index, where parameters take a map lookup.
    const actor = this.actors[this.key(node, replica)];
    // A contribution whose cell is already filled is a duplicate (RELIABILITY.md): dropped, counted.
    if (actor !== undefined) {
      if (actor.hasGradient(mb, cell)) this.counters.dropped++;
      else if (actor.receiveGradient(mb, cell, value)) this.readyBackward(actor, mb);
      return;
    }
    const param = this.params.get(node);
    if (param === undefined)
      throw new InputError(
        `host ${this.worker}: a gradient for %${node} of replica ${replica}, which has no actor here`,
        { node },
      );
    if (param.has(replica, mb, cell)) {
      this.counters.dropped++;
      return;
    }
    const total = param.receive(this.engine.ops, replica, mb, cell, value);
    if (total === null) return;
    // The parameter's gradient context closed: keep it for the optimizer here, or report it (one
    // copy reports: Note [parameter placement]).
    if (this.updates.active) {
      this.updates.keep(node, total);
      if (this.pendingUpdate !== null && this.updates.ready(this.trainable))
        effects.push(...this.update(this.pendingUpdate));
      if (!param.primary) return;
      const sumsq = this.engine.sumOfSquares(total);
      effects.push({ kind: 'report', report: { kind: 'gradNorm', step: this.step, node, sumsq } });
    } else if (param.primary)
      effects.push({
        kind: 'report',
        report: { kind: 'grad', step: this.step, node, tensor: this.giveAway(total) },
      });
  }

  /**
   * The task to run next, or null when nothing may run now. In dataflow order backward tasks go first:
   * they free what the forward kept. Results never depend on the order.
   */
  next(): TaskInfo | null {
    if (this.failed) return null;
    this.current ??= this.queue.take();
    return this.current;
  }

  /** Runs the task `next()` returned, and returns its effects. */
  run(): HostEffect<T>[] {
    const task = this.current ?? this.queue.take();
    this.current = null;
    const effects: HostEffect<T>[] = [];
    if (task === null) return effects;
    const fp = this.failpoints.length > 0 ? this.failpointFor(task) : undefined;
    try {
      if (fp !== undefined) {
        if (fp.action === 'throw') {
          throw new FailpointError(
            `failpoint: ${fp.phase} of ${label(task.actor.node)} microbatch ${task.mb}`,
            { phase: fp.phase },
          );
        }
        effects.push({ kind: 'failpoint', action: fp.action, task: info(task) });
        if (fp.action !== 'drop' && fp.action !== 'dup') return effects;
      }
      this.counters.tasks++;
      if (task.phase === 'forward') this.forward(task, effects);
      else this.backward(task, effects);
      this.queue.done(task);
      // A dropped task's messages are lost; its reports still go out. A duplicating one sends twice.
      if (fp?.action === 'drop') return effects.filter((e) => e.kind !== 'send');
      if (fp?.action === 'dup') for (const e of effects.filter((x) => x.kind === 'send')) effects.push(e);
    } catch (err) {
      this.failed = true;
      effects.push({
        kind: 'report',
        report: {
          kind: 'failed',
          step: this.step,
          error: toWireError(err, {
            worker: this.worker,
            node: label(task.actor.node),
            op: task.actor.node.op,
            step: this.step,
            microbatch: task.mb,
            replica: task.replica,
            phase: task.phase === 'forward' ? 'forward' : 'backward',
          }),
        },
      });
    }
    return effects;
  }

  private failpointFor(task: Task<T>): Failpoint | undefined {
    const node = task.actor.node;
    const phase = task.phase === 'forward' ? 'forward' : 'backward';
    return this.failpoints.find(
      (f) =>
        (f.node === node.id || f.node === node.name) &&
        f.phase === phase &&
        (f.mb === undefined || f.mb === task.mb) &&
        (f.replica === undefined || f.replica === task.replica) &&
        (f.step === undefined || f.step === this.step),
    );
  }

  private bindings(replica: number, mb: number): Bindings {
    return this.shards[replica * this.microbatches + mb]!.bindings;
  }

  private forward(task: Task<T>, effects: HostEffect<T>[]): void {
    const { actor, mb, replica } = task;
    const node = actor.node;
    const engine = this.engine;
    let output: T;
    if (task.value !== undefined) {
      output = task.value;
      actor.fed(mb);
    } else {
      output = engine.forward(node, actor.arguments(mb), this.bindings(replica, mb), actor.def);
      actor.afterForward(mb, output);
      if (actor.runsVjp) {
        const kept = actor.state(mb).kept;
        for (let k = 0; k < kept.length; k++) {
          engine.share(kept[k]!);
          this.counters.keptBytes += engine.bytes(kept[k]!);
        }
        if (this.counters.keptBytes > this.counters.peakKeptBytes)
          this.counters.peakKeptBytes = this.counters.keptBytes;
      }
    }
    if (this.anomalies && engine.isFinite?.(output) === false) effects.push(this.anomaly(task, 'forward'));
    if (node.id === this.plan.loss) {
      const shard = this.shards[replica * this.microbatches + mb]!;
      effects.push({
        kind: 'report',
        report: { kind: 'loss', step: this.step, mb, replica, value: engine.item(output) },
      });
      if (actor.runsVjp) {
        // Note [microbatch scaling]: the seed of a shard's loss is its share of the batch.
        actor.seed(mb, engine.ops.constant(shard.scale, node.dtype));
        this.readyBackward(actor, mb);
      }
      return;
    }
    const placement = this.plan.placement[replica]!;
    const edges = this.plan.consumers[node.id]!;
    let remote: number[] | null = null;
    for (let k = 0; k < edges.length; k++) {
      const c = edges[k]![0];
      const w = placement[c]!;
      if (w !== this.worker) {
        if (remote === null) remote = [w];
        else if (!remote.includes(w)) remote.push(w);
        continue;
      }
      this.counters.localMessages++;
      engine.share(output);
      const consumer = this.actor(c, replica);
      if (consumer.receiveInput(mb, edges[k]![1], output)) this.readyForward(consumer, mb);
    }
    if (remote === null) return;
    for (let i = 0; i < remote.length; i++) {
      const tensor = i === remote.length - 1 ? this.giveAway(output) : this.copy(output);
      effects.push(
        this.remote(remote[i]!, { kind: 'activation', step: this.step, mb, replica, node: node.id, tensor }),
      );
    }
  }

  /**
   * A backward task: the whole VJP ('backward'), or one part of a split one ('input': the gradients
   * of activations; 'weight': the gradients of parameters, later). The parts run the same VJP with
   * complementary `needs`, so their contributions are the very ones the whole VJP would send.
   */
  private backward(task: Task<T>, effects: HostEffect<T>[]): void {
    const { actor, mb, replica, phase } = task;
    const node = actor.node;
    const state = actor.state(mb);
    const g = actor.cotangent(this.engine.ops, mb);
    if (actor.reportsGradient) {
      // Note [input gradients]: the sum of an input's contributions for this shard goes to the coordinator.
      const tensor = this.giveAway(g);
      actor.afterBackward(mb);
      effects.push({
        kind: 'report',
        report: { kind: 'inputGrad', step: this.step, mb, replica, node: node.id, tensor },
      });
      return;
    }
    const needs =
      phase === 'backward' ? actor.needs : phase === 'input' ? actor.needsInput : actor.needsWeight;
    const last = phase !== 'input' || !actor.hasWeightPart;
    let cotangents: readonly (T | null)[] = NO_COTANGENTS;
    if (needs.includes(true)) {
      const bindings = this.bindings(replica, mb);
      if (this.engine.contributions !== undefined)
        cotangents = this.engine.contributions(node, needs, bindings);
      else {
        this.vjpSource.fill(actor.keptIds, state.kept, bindings);
        cotangents = runVjp(this.engine.ops, node, g, needs, this.vjpSource, actor.def);
      }
    }
    if (this.anomalies && cotangents.some((c) => c !== null && this.engine.isFinite?.(c) === false)) {
      effects.push(this.anomaly(task, 'backward'));
    }
    if (last) {
      const kept = state.kept;
      for (let k = 0; k < kept.length; k++) this.counters.keptBytes -= this.engine.bytes(kept[k]!);
      actor.afterBackward(mb);
    } else actor.holdCotangent(mb, g);
    // Local contributions go straight to their producer; remote ones are sent after, as (slot,
    // worker) pairs: a replicated parameter gets one at each of its copies (Note [parameter placement]).
    let remote: number[] | null = null;
    const placement = this.plan.placement[replica]!;
    for (let slot = 0; slot < cotangents.length; slot++) {
      const value = cotangents[slot];
      if (value === null || value === undefined) continue;
      const producer = node.inputs[slot]!;
      const copies = this.paramCopies?.get(producer);
      if (copies === undefined) {
        const at = placement[producer]!;
        if (at === this.worker) {
          this.counters.localMessages++;
          this.receiveGradient(producer, replica, mb, node.id, slot, value, effects);
        } else (remote ??= []).push(slot, at);
        continue;
      }
      for (const w of copies) {
        if (w === this.worker) {
          this.counters.localMessages++;
          this.receiveGradient(producer, replica, mb, node.id, slot, value, effects);
        } else (remote ??= []).push(slot, w);
      }
    }
    if (remote === null) return;
    for (let i = 0; i < remote.length; i += 2) {
      const slot = remote[i]!;
      const value = cotangents[slot]!;
      let later = false;
      for (let j = i + 2; j < remote.length; j += 2)
        later ||= this.engine.sameStorage(cotangents[remote[j]!]!, value);
      const tensor = later ? this.copy(value) : this.giveAway(value);
      const producer = node.inputs[slot]!;
      effects.push(
        this.remote(remote[i + 1]!, {
          kind: 'gradient',
          step: this.step,
          mb,
          replica,
          node: producer,
          consumer: node.id,
          slot,
          tensor,
        }),
      );
    }
  }

  private anomaly(task: Task<T>, phase: 'forward' | 'backward'): HostEffect<T> {
    return {
      kind: 'report',
      report: {
        kind: 'anomaly',
        step: this.step,
        node: task.node,
        mb: task.mb,
        replica: task.replica,
        phase,
      },
    };
  }

  /** A value leaving this host: the original if nothing here still references its storage, else a copy. */
  private giveAway(t: T): T {
    return this.engine.isShared(t) ? this.copy(t) : t;
  }

  private copy(t: T): T {
    this.counters.copies++;
    return this.engine.copy(t);
  }

  private remote(worker: number, message: Message<T>): HostEffect<T> {
    this.counters.remoteMessages++;
    this.counters.sentBytes += this.engine.bytes(message.tensor);
    return { kind: 'send', worker, message };
  }

  /** What every actor of this host is still waiting for in the current step (for timeout errors). */
  waiting(): WaitingEntry[] {
    return waitingEntries(this.plan, this.cells, this.actorList, this.params.values());
  }
}

const NO_COTANGENTS: readonly null[] = [];
const EMPTY: ReadonlySet<ArrayBufferLike> = new Set();

function info<T>(task: Task<T>): TaskInfo {
  return { phase: task.phase, node: task.node, stage: task.stage, replica: task.replica, mb: task.mb };
}

export type { HostAction, TaskPhase };
