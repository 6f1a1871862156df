import { InputError } from '../errors.ts';
import { PARAM } from '../graph/columns.ts';
import { label } from '../graph/graph.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import type { Plan } from '../partition/plan.ts';
import type { LiveBuffers } from '../tensor/pool.ts';
import { checkConcreteShape } from '../tensor/shape.ts';
import type { ValueEngine } from './engine.ts';
import { type Failpoint, FailpointError, updateFailpoint } from './failpoint.ts';
import type { HostEffect, HostStats } from './host-types.ts';
import { LocalUpdate } from './local-update.ts';
import type { StepStart, StepUpdate } from './messages.ts';
import type { Outbox } from './outbox.ts';
import { ParamActor } from './param-actor.ts';
import { NoUpdates, type Updates } from './param-updates.ts';

/**
 * The parameters one host holds: an actor per parameter placed here (a copy, when it is replicated:
 * Note [parameter placement]), the trainable ones the optimizer updates, the step's closed
 * gradients and the update. Gradients stay here for the update when an optimizer runs on the
 * workers; else the reporting copy sends each one to the coordinator.
 */
export class ParamSide<T> {
  private readonly actors = new Map<number, ParamActor<T>>();
  /** The parameters held here that get a gradient (in `wrt`): what the optimizer updates. */
  private readonly trainable = new Map<number, ParamActor<T>>();
  private readonly updates: Updates<T>;
  /** Note [local update]: the step's rule, losses and sums of squares, when this host decides its update. */
  private readonly local = new LocalUpdate();
  /** Reporting copies held here whose gradient of the step has not closed yet (Note [report cadence]). */
  private open = 0;

  /** `whenKept`: a gradient was kept for the update (a pending update may now run). */
  constructor(
    private readonly plan: Plan,
    private readonly worker: number,
    private readonly engine: ValueEngine<T>,
    private readonly counters: HostStats,
    private readonly out: Outbox<T>,
    values: ReadonlyMap<number, T>,
    private readonly whenKept: (effects: HostEffect<T>[]) => void,
  ) {
    const { graph, placement } = plan;
    this.updates = engine.updates?.(worker, (id) => label(graph.nodeAt(id))) ?? new NoUpdates(worker);
    // Ids from the kinds column: another host's parameters are never made here (Note [nodes on first read]).
    const kinds = graph.columns.kinds;
    const trainable = new Set(plan.params);
    for (let r = 0; r < plan.replicas; r++) {
      for (let id = 0; id < kinds.length; id++) {
        if (kinds[id] !== PARAM || placement[r]![id] !== worker || this.actors.has(id)) continue;
        // One actor per copy here; replica 0's copy reports.
        const value = values.get(id) ?? this.zeros(id);
        const primary = placement[0]![id] === worker;
        const actor = new ParamActor(id, value, plan.grad.expected[id]!, primary);
        this.actors.set(id, actor);
        if (trainable.has(id)) this.trainable.set(id, actor);
      }
    }
    this.countBytes();
  }

  /** A parameter's zero (a parameter's shape has no symbolic dimension: the graph checker says so). */
  private zeros(id: number): T {
    const node = this.plan.graph.nodeAt(id);
    checkConcreteShape(node.shape, label(node));
    return this.engine.zeros(node.shape, node.dtype);
  }

  all(): IterableIterator<ParamActor<T>> {
    return this.actors.values();
  }

  ids(): number[] {
    return [...this.actors.keys()];
  }

  primaryIds(): number[] {
    return [...this.actors.values()].filter((p) => p.primary).map((p) => p.node);
  }

  get(node: number): T {
    return this.actor(node).value;
  }

  set(node: number, value: T): void {
    const p = this.actor(node);
    this.engine.share(value);
    p.value = value;
    this.countBytes();
  }

  private actor(node: number): ParamActor<T> {
    const p = this.actors.get(node);
    if (p === undefined) throw new InputError(`host ${this.worker} does not own parameter %${node}`);
    return p;
  }

  /** Whether this host holds parameter `node` (an id or a name). */
  holds(node: number | string): boolean {
    const id = typeof node === 'number' ? node : this.plan.graph.names().get(node);
    return id !== undefined && this.actors.has(id);
  }

  /** Counts the bytes of the owned parameters and their optimizer state (tensor bytes per worker). */
  private countBytes(): void {
    let bytes = 0;
    for (const p of this.actors.values()) bytes += this.engine.bytes(p.value);
    this.counters.paramBytes = bytes;
    this.counters.optimizerBytes = this.updates.stateBytes();
  }

  setOptimizer(spec: OptimizerSpec | null): void {
    this.updates.set(spec);
  }

  getOptimizerState(): OptimizerCheckpoint {
    return this.updates.getState();
  }

  setOptimizerState(checkpoint: OptimizerCheckpoint): void {
    this.updates.setState(this.actors, checkpoint);
    this.countBytes();
  }

  /** Starts a training step (null: an inference step): its rule when this host decides its own update. */
  begin(start: StepStart | null): void {
    this.local.start(this.updates.active ? start : null, this.plan.replicas);
    this.open = 0;
  }

  /** Whether a reporting copy held here still waits for contributions this step (Note [report cadence]). */
  get reportsOpen(): boolean {
    return this.open > 0;
  }

  /** Whether this host decides the step's update itself (Note [local update]). */
  get decidesUpdate(): boolean {
    return this.local.rule !== null;
  }

  /** Starts parameter `param`'s step: the gradient of one the loss does not depend on is zero. */
  start(param: ParamActor<T>, start: StepStart, effects: HostEffect<T>[]): void {
    param.start(start.microbatches, this.plan.replicas);
    if (param.primary && !param.closed) this.open++;
    if (param.closed && this.updates.active && this.trainable.has(param.node)) {
      // So the optimizer still steps it (as the reference does).
      this.updates.keep(param.node, this.zeros(param.node));
      if (this.local.rule !== null) this.local.sum(param.node, 0);
      if (param.primary)
        effects.push({
          kind: 'report',
          report: { kind: 'gradNorm', step: start.step, node: param.node, sumsq: 0 },
        });
    }
  }

  /** A contribution to parameter `node`'s gradient: cell `cell` (Note [gradient cells]) of (replica, mb). */
  receive(
    node: number,
    replica: number,
    mb: number,
    cell: number,
    value: T,
    step: number,
    effects: HostEffect<T>[],
  ): void {
    const param = this.actors.get(node);
    if (param === undefined)
      throw new InputError(
        `host ${this.worker}: a gradient for %${node} of replica ${replica}, which has no actor here`,
        { node },
      );
    // A contribution that already arrived is a duplicate (a message sent twice): dropped, counted.
    if (param.has(replica, mb, cell)) {
      this.counters.dropped++;
      return;
    }
    const total = param.receive(this.engine.ops, replica, mb, cell, value);
    if (total === null) return;
    if (param.primary) this.open--;
    // The parameter's gradient context closed: keep it for the optimizer here, or report it (one
    // copy reports: Note [parameter placement]).
    if (this.updates.active) {
      this.updates.keep(node, total);
      this.whenKept(effects);
      const local = this.local.rule !== null;
      if (!param.primary && !local) return;
      const sumsq = this.engine.sumOfSquares(total);
      if (local) this.local.sum(node, sumsq);
      if (param.primary) effects.push({ kind: 'report', report: { kind: 'gradNorm', step, node, sumsq } });
    } else if (param.primary) {
      // Note [global norm order]: the sum of squares is taken here, where the gradient closed, and
      // goes ahead of it; the coordinator then reads no gradient for the norm.
      const sumsq = this.engine.sumOfSquares(total);
      effects.push(
        { kind: 'report', report: { kind: 'gradNorm', step, node, sumsq } },
        { kind: 'report', report: { kind: 'grad', step, node, tensor: this.out.giveAway(total) } },
      );
    }
  }

  /** A shard's loss for the step's local decision (Note [local update]); false for a duplicate. */
  lossKnown(replica: number, mb: number, value: number): boolean {
    return this.local.loss(replica, mb, value);
  }

  /** Whether every gradient and every loss the step's local decision needs is here (Note [local update]). */
  decisionReady(): boolean {
    return this.local.complete(this.trainable.size) && this.updates.ready(this.trainable);
  }

  /**
   * Decides the step's update here and applies it when the step is finite (Note [local update]):
   * true when it was applied, false when the step's gradients were dropped. Throws what fails.
   */
  decide(step: number, failpoints: readonly Failpoint[]): boolean {
    const rule = this.local.rule!;
    const scale = this.local.decide((id) => label(this.plan.graph.nodeAt(id)));
    if (scale === null) {
      this.forget();
      return false;
    }
    this.update({ step, lr: rule.lr, scale }, failpoints);
    return true;
  }

  /** Whether every trainable parameter held here has its gradient kept for the update. */
  ready(): boolean {
    return this.updates.ready(this.trainable);
  }

  /**
   * Applies step `u.step`'s update to every trainable parameter held here, in place (Note [deferred
   * update] in src/runtime/deferred-update.ts). Throws what fails, an update failpoint included.
   */
  update(u: StepUpdate, failpoints: readonly Failpoint[]): void {
    const fp = updateFailpoint(failpoints, u.step, (node) => this.holds(node));
    if (fp !== undefined) throw new FailpointError(`failpoint: update of ${fp.node}`, { phase: 'update' });
    this.updates.apply(this.trainable, u.lr, u.scale);
    this.countBytes();
  }

  /** Forgets the step's kept gradients. */
  forget(): void {
    this.updates.clear();
  }

  /** Adds every value held here to the live set (Note [step arena]): values, sums, kept gradients, optimizer states. */
  held(live: LiveBuffers, add: (value: T | undefined) => void): void {
    for (const p of this.actors.values()) {
      add(p.value);
      p.held(add);
    }
    this.updates.held(live);
  }

  /** Drops the step's partial sums. */
  reset(): void {
    for (const p of this.actors.values()) p.reset();
  }
}
