import { sumCanonical } from '../autodiff/backprop.ts';
import { computeNode, resolveShape } from '../autodiff/forward.ts';
import { runVjp } from '../autodiff/vjp.ts';
import { InputError } from '../errors.ts';
import { label, type Node } from '../graph/graph.ts';
import { EagerOps } from '../ops/eager.ts';
import { edgeGradient, type Plan } from '../partition/plan.ts';
import { cast, scalar, type Tensor, zeros } from '../tensor/tensor.ts';
import { type Failpoint, type FailpointAction, FailpointError } from './failpoint.ts';
import type { DataMessage, Report, StepStart } from './messages.ts';
import { type Contribution, NodeActor } from './node-actor.ts';
import { ParamActor } from './param-actor.ts';
import { toWireError } from './wire-error.ts';

export type Message = DataMessage<Tensor>;

/** What a host asks its shell to do: the only way its work leaves it. */
export type HostEffect =
  | { readonly kind: 'send'; readonly worker: number; readonly message: Message }
  | { readonly kind: 'report'; readonly report: Report<Tensor> }
  | { readonly kind: 'failpoint'; readonly action: FailpointAction; readonly task: TaskInfo };

export interface TaskInfo {
  readonly phase: 'forward' | 'backward';
  readonly node: number;
  readonly replica: number;
  readonly mb: number;
}

interface Task extends TaskInfo {
  readonly actor: NodeActor;
  /** The fed value, for an input node's forward. */
  readonly value?: Tensor;
}

export interface HostStats {
  tasks: number;
  localMessages: number;
  remoteMessages: number;
  copies: number;
  dropped: number;
}

export interface WaitingEntry {
  node: string;
  replica: number;
  mb: number;
  waitingFor: 'inputs' | 'gradients' | 'parameter gradients';
  have: number;
  need: number;
  /** The nodes that still owe something. */
  from: string[];
}

const ops = new EagerOps();
const SHARED = Symbol('shared');

/**
 * One worker's actors and mailbox: pure logic, events in and effects out. The shell (a worker thread,
 * or the in-process transport) calls `startStep`, `deliver`, and `next`/`run` in a loop, and performs
 * the effects. Messages between this host's own actors never leave it and are never serialized.
 */
export class Host {
  readonly worker: number;
  readonly plan: Plan;
  readonly stats: HostStats = { tasks: 0, localMessages: 0, remoteMessages: 0, copies: 0, dropped: 0 };
  private readonly actors = new Map<number, NodeActor>();
  private readonly params = new Map<number, ParamActor>();
  private readonly forwardQueue: Task[] = [];
  private readonly backwardQueue: Task[] = [];
  private fq = 0;
  private bq = 0;
  private step = -1;
  private microbatches = 0;
  private shards = new Map<number, { bindings: Map<string, number>; scale: number }>();
  private early: Message[] = [];
  private failed = false;
  private failpoints: Failpoint[] = [];

  constructor(plan: Plan, worker: number, params: ReadonlyMap<number, Tensor> = new Map()) {
    this.plan = plan;
    this.worker = worker;
    const { graph, grad, placement } = plan;
    for (let r = 0; r < plan.replicas; r++) {
      const p = placement[r]!;
      for (const node of graph.nodes) {
        if (p[node.id] !== worker || node.op === 'const') continue;
        if (node.op === 'param') {
          if (r === 0)
            this.params.set(
              node.id,
              new ParamActor(node.id, params.get(node.id) ?? placeholder(node), grad.expected[node.id]!),
            );
          continue;
        }
        const needs = node.inputs.map((_, s) => edgeGradient(plan, node.id, s));
        this.actors.set(this.key(node.id, r), new NodeActor(plan, node, r, needs));
      }
    }
  }

  private key(node: number, replica: number): number {
    return replica * this.plan.graph.size + node;
  }

  /** The parameters this host owns. */
  paramIds(): number[] {
    return [...this.params.keys()];
  }

  setParam(node: number, value: Tensor): void {
    const p = this.params.get(node);
    if (p === undefined) throw new InputError(`host ${this.worker} does not own parameter %${node}`);
    this.share(value);
    p.value = value;
  }

  getParam(node: number): Tensor {
    const p = this.params.get(node);
    if (p === undefined) throw new InputError(`host ${this.worker} does not own parameter %${node}`);
    return p.value;
  }

  setFailpoints(failpoints: readonly Failpoint[]): void {
    this.failpoints = [...failpoints];
  }

  /** Starts a step: forgets the last one, and hands every parameter's value to its consumers. */
  startStep(start: StepStart): HostEffect[] {
    this.reset();
    this.step = start.step;
    this.microbatches = start.microbatches;
    for (const s of start.shards) {
      this.shards.set(s.replica * start.microbatches + s.mb, {
        bindings: new Map(s.bindings),
        scale: s.scale,
      });
    }
    const effects: HostEffect[] = [];
    for (const param of this.params.values()) {
      param.start(start.microbatches, this.plan.replicas);
      const remote = new Set<number>();
      for (let r = 0; r < this.plan.replicas; r++) {
        for (const [c, slot] of this.plan.consumers[param.node]!) {
          const w = this.plan.placement[r]![c]!;
          if (w === this.worker) this.receiveParamInput(this.actors.get(this.key(c, r))!, slot, param.value);
          else remote.add(w);
        }
      }
      for (const w of remote) {
        this.stats.copies++;
        effects.push(
          this.remote(w, { kind: 'param', step: this.step, node: param.node, tensor: cast(param.value) }),
        );
      }
    }
    const early = this.early;
    this.early = [];
    for (const m of early) effects.push(...this.deliver(m));
    return effects;
  }

  /** Drops everything held for the current step (after a failure, or before the next step). */
  reset(): void {
    for (const a of this.actors.values()) a.reset();
    for (const p of this.params.values()) p.reset();
    this.forwardQueue.length = 0;
    this.backwardQueue.length = 0;
    this.fq = 0;
    this.bq = 0;
    this.shards.clear();
    this.failed = false;
  }

  /** A message from the coordinator or another host. Returns reports it closes (a parameter's gradient). */
  deliver(m: Message): HostEffect[] {
    const effects: HostEffect[] = [];
    if (m.step !== this.step) {
      if (m.step > this.step) this.early.push(m);
      else this.stats.dropped++;
      return effects;
    }
    switch (m.kind) {
      case 'feed': {
        const actor = this.actors.get(this.key(m.node, m.replica));
        if (actor === undefined)
          throw new InputError(`host ${this.worker}: no input actor %${m.node} of replica ${m.replica}`);
        this.forwardQueue.push({
          phase: 'forward',
          node: m.node,
          replica: m.replica,
          mb: m.mb,
          actor,
          value: m.tensor,
        });
        break;
      }
      case 'activation':
        this.share(m.tensor);
        for (const [c, slot] of this.plan.consumers[m.node]!) {
          if (this.plan.placement[m.replica]![c] !== this.worker) continue;
          const actor = this.actors.get(this.key(c, m.replica))!;
          if (actor.receiveInput(m.mb, slot, m.tensor)) this.queueForward(actor, m.mb);
        }
        break;
      case 'param':
        this.share(m.tensor);
        for (let r = 0; r < this.plan.replicas; r++) {
          for (const [c, slot] of this.plan.consumers[m.node]!) {
            if (this.plan.placement[r]![c] === this.worker)
              this.receiveParamInput(this.actors.get(this.key(c, r))!, slot, m.tensor);
          }
        }
        break;
      case 'gradient':
        this.receiveGradient(
          m.node,
          m.replica,
          m.mb,
          { consumer: m.consumer, slot: m.slot, value: m.tensor },
          effects,
        );
        break;
    }
    return effects;
  }

  private receiveParamInput(actor: NodeActor, slot: number, value: Tensor): void {
    for (const mb of actor.receiveParam(slot, value)) this.queueForward(actor, mb);
  }

  private receiveGradient(
    node: number,
    replica: number,
    mb: number,
    c: Contribution,
    effects: HostEffect[],
  ): void {
    this.share(c.value);
    const param = this.params.get(node);
    if (param !== undefined) {
      const total = param.receive(ops, replica, mb, c);
      if (total !== null) {
        // The parameter's gradient context closed: report it (the host holds nothing else of it).
        effects.push({
          kind: 'report',
          report: { kind: 'grad', step: this.step, node, tensor: this.giveAway(total) },
        });
      }
      return;
    }
    const actor = this.actors.get(this.key(node, replica))!;
    if (actor.receiveGradient(mb, c))
      this.backwardQueue.push({ phase: 'backward', node, replica, mb, actor });
  }

  private queueForward(actor: NodeActor, mb: number): void {
    this.forwardQueue.push({ phase: 'forward', node: actor.node.id, replica: actor.replica, mb, actor });
  }

  /**
   * The task to run next, or null when nothing is ready. Backward tasks go first: they free what the
   * forward kept (the memory policy of 1F1B). Results never depend on this order.
   */
  next(): TaskInfo | null {
    if (this.failed) return null;
    if (this.bq < this.backwardQueue.length) return this.backwardQueue[this.bq]!;
    if (this.fq < this.forwardQueue.length) return this.forwardQueue[this.fq]!;
    if (this.backwardQueue.length > 0 || this.forwardQueue.length > 0) {
      this.backwardQueue.length = this.forwardQueue.length = this.bq = this.fq = 0;
    }
    return null;
  }

  /** Runs the task `next()` returned, and returns its effects. */
  run(): HostEffect[] {
    const task = (
      this.bq < this.backwardQueue.length ? this.backwardQueue[this.bq++] : this.forwardQueue[this.fq++]
    ) as Task;
    const effects: HostEffect[] = [];
    const fp = this.failpointFor(task);
    try {
      if (fp !== undefined) {
        if (fp.action === 'throw') {
          throw new FailpointError(
            `failpoint: ${fp.phase} of ${label(task.actor.node)} microbatch ${task.mb}`,
            { phase: fp.phase },
          );
        }
        effects.push({ kind: 'failpoint', action: fp.action, task: info(task) });
        if (fp.action !== 'drop') return effects;
      }
      this.stats.tasks++;
      const out = task.phase === 'forward' ? this.forward(task) : this.backward(task);
      // A dropped task's messages are lost; what it reported about itself still goes out.
      for (const e of out) if (fp?.action !== 'drop' || e.kind !== 'send') effects.push(e);
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
            phase: task.phase,
          }),
        },
      });
    }
    return effects;
  }

  private failpointFor(task: Task): Failpoint | undefined {
    if (this.failpoints.length === 0) return undefined;
    const node = task.actor.node;
    return this.failpoints.find(
      (f) =>
        (f.node === node.id || f.node === node.name) &&
        f.phase === task.phase &&
        (f.mb === undefined || f.mb === task.mb) &&
        (f.replica === undefined || f.replica === task.replica) &&
        (f.step === undefined || f.step === this.step),
    );
  }

  private bindings(replica: number, mb: number): Map<string, number> {
    return this.shards.get(replica * this.microbatches + mb)!.bindings;
  }

  private forward(task: Task): HostEffect[] {
    const { actor, mb, replica } = task;
    const node = actor.node;
    let output: Tensor;
    if (task.value !== undefined) output = task.value;
    else {
      const args = actor.arguments(mb);
      output = computeNode(node, args, this.bindings(replica, mb));
      actor.afterForward(mb, args, output);
      if (actor.runsVjp) for (const t of actor.state(mb).kept!.values()) this.share(t);
    }
    const effects: HostEffect[] = [];
    if (node.id === this.plan.loss) {
      const shard = this.shards.get(replica * this.microbatches + mb)!;
      effects.push({
        kind: 'report',
        report: { kind: 'loss', step: this.step, mb, replica, value: output.data[0]! },
      });
      if (actor.runsVjp) {
        // Note [microbatch scaling]: the seed of a shard's loss is its share of the batch.
        actor.receiveGradient(mb, { consumer: -1, slot: 0, value: scalar(shard.scale, node.dtype) });
        this.backwardQueue.push({ phase: 'backward', node: node.id, replica, mb, actor });
      }
      return effects;
    }
    const remote = new Set<number>();
    const placement = this.plan.placement[replica]!;
    for (const [c, slot] of this.plan.consumers[node.id]!) {
      const w = placement[c]!;
      if (w !== this.worker) {
        remote.add(w);
        continue;
      }
      this.stats.localMessages++;
      this.share(output);
      const consumer = this.actors.get(this.key(c, replica))!;
      if (consumer.receiveInput(mb, slot, output)) this.queueForward(consumer, mb);
    }
    let left = remote.size;
    for (const w of remote) {
      const tensor = --left === 0 ? this.giveAway(output) : this.copy(output);
      effects.push(
        this.remote(w, { kind: 'activation', step: this.step, mb, replica, node: node.id, tensor }),
      );
    }
    return effects;
  }

  private backward(task: Task): HostEffect[] {
    const effects: HostEffect[] = [];
    const { actor, mb, replica } = task;
    const node = actor.node;
    const state = actor.state(mb);
    const g = sumCanonical(ops, state.contributions);
    const bindings = this.bindings(replica, mb);
    const kept = state.kept!;
    const cotangents = runVjp(ops, node, g, actor.needs, {
      primal: (id) => kept.get(id)!,
      shape: (id) => resolveShape(this.plan.graph.nodes[id]!.shape, bindings, 'vjp'),
    });
    actor.afterBackward(mb);
    const outgoing: { worker: number; producer: number; slot: number; value: Tensor }[] = [];
    const placement = this.plan.placement[replica]!;
    node.inputs.forEach((producer, slot) => {
      const value = cotangents[slot];
      if (value === null || value === undefined) return;
      const w = placement[producer]!;
      if (w === this.worker) {
        this.stats.localMessages++;
        this.receiveGradient(producer, replica, mb, { consumer: node.id, slot, value }, effects);
      } else outgoing.push({ worker: w, producer, slot, value });
    });
    for (const [i, o] of outgoing.entries()) {
      const later = outgoing.slice(i + 1).some((x) => x.value.data === o.value.data);
      const tensor = later ? this.copy(o.value) : this.giveAway(o.value);
      effects.push(
        this.remote(o.worker, {
          kind: 'gradient',
          step: this.step,
          mb,
          replica,
          node: o.producer,
          consumer: node.id,
          slot: o.slot,
          tensor,
        }),
      );
    }
    return effects;
  }

  /**
   * Marks a tensor's storage as still referenced here (delivered locally, kept for a backward, a
   * parameter's value): it is never given away. The mark sits on the storage, not the tensor, because
   * a reshape shares its input's storage; it is a property, not a set, because this is a hot path.
   */
  private share(t: Tensor): void {
    (t.data as unknown as Record<symbol, boolean>)[SHARED] = true;
  }

  /** A tensor leaving this host: the original if nothing here still references its storage, else a copy. */
  private giveAway(t: Tensor): Tensor {
    return (t.data as unknown as Record<symbol, boolean>)[SHARED] === true ? this.copy(t) : t;
  }

  private copy(t: Tensor): Tensor {
    this.stats.copies++;
    return cast(t);
  }

  private remote(worker: number, message: Message): HostEffect {
    this.stats.remoteMessages++;
    return { kind: 'send', worker, message };
  }

  /** What every actor of this host is still waiting for in the current step (for timeout errors). */
  waiting(): WaitingEntry[] {
    const out: WaitingEntry[] = [];
    const nodes = this.plan.graph.nodes;
    for (const actor of this.actors.values()) {
      for (const [mb, s] of actor.microbatches) {
        const name = label(actor.node);
        if (!s.fired) {
          const from = actor.node.inputs
            .filter((_, i) => actor.slots[i] === 'microbatch' && s.inputs[i] === undefined)
            .map((i) => label(nodes[i]!));
          out.push({
            node: name,
            replica: actor.replica,
            mb,
            waitingFor: 'inputs',
            have: actor.mbSlots - s.missing,
            need: actor.mbSlots,
            from,
          });
        } else if (actor.runsVjp) {
          const got = new Set(s.contributions.map((c) => `${c.consumer}:${c.slot}`));
          const from = this.plan.consumers[actor.node.id]!.filter(
            ([c, slot]) => edgeGradient(this.plan, c, slot) && !got.has(`${c}:${slot}`),
          ).map(([c]) => label(nodes[c]!));
          out.push({
            node: name,
            replica: actor.replica,
            mb,
            waitingFor: 'gradients',
            have: s.contributions.length,
            need: actor.expected,
            from,
          });
        }
      }
    }
    for (const p of this.params.values()) {
      for (const m of p.missing()) {
        out.push({
          node: label(nodes[p.node]!),
          replica: m.replica,
          mb: m.mb,
          waitingFor: 'parameter gradients',
          have: m.have,
          need: m.need,
          from: [],
        });
      }
    }
    return out;
  }
}

function info(task: Task): TaskInfo {
  return { phase: task.phase, node: task.node, replica: task.replica, mb: task.mb };
}

/** Until the runtime sets it, a parameter is zeros of its shape. */
function placeholder(node: Node): Tensor {
  return zeros(node.shape as number[], node.dtype);
}
