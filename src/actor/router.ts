import type { GradientCells } from '../autodiff/plan.ts';
import { InputError } from '../errors.ts';
import { CONST, PARAM } from '../graph/columns.ts';
import { edgeGradients, type Plan } from '../partition/plan.ts';
import type { ValueEngine } from './engine.ts';
import type { FlowControl } from './flow-control.ts';
import type { HostEffect, HostStats, Message } from './host-types.ts';
import { ActorKinds, NodeActor } from './node-actor.ts';
import type { Outbox } from './outbox.ts';
import type { ParamActor } from './param-actor.ts';
import type { ParamSide } from './param-side.ts';
import { TaskQueue } from './task-queue.ts';

/**
 * Where a value or a contribution goes: to an actor of this host, straight away, or to another
 * worker, once per worker, as a message; a replicated parameter's contribution goes to each of its
 * copies (Note [parameter placement]). The router holds this host's node actors, and hands a task
 * to the queue when its actor says it is ready. These are the host's hot paths: an index per
 * lookup, no allocation but the effects.
 */
export class Router<T> {
  /** The node actors of this host built so far (Note [actors on first use]). */
  private readonly built: NodeActor<T>[] = [];
  /** The actors fed only by parameters and constants (Note [fixed-input nodes]), built at once. */
  private readonly fixedOnly: NodeActor<T>[] = [];
  readonly queue: TaskQueue<T>;
  /** Actors by replica * nodes + node (dense: the hot lookups are an index, not a hash); a hole until built. */
  private readonly table: (NodeActor<T> | undefined)[];
  private readonly nodes: number;
  /** The workers holding a copy of each parameter that has more than one. */
  private readonly copies: Map<number, readonly number[]> | null = null;
  /** Where every contribution goes (Note [gradient cells]). */
  private readonly cells: GradientCells;
  private readonly kinds = new ActorKinds();
  private readonly constant: (id: number) => T;
  /** The microbatches of the step started (0: none yet): an actor built during a step starts with them. */
  private microbatches = 0;
  /** `needs`' arrays, one per arity. */
  private readonly needsByArity: boolean[][] = [];
  /** `edgeGradient` of the plan, looked up once. */
  private readonly carriesGradient: (consumer: number, slot: number) => boolean;

  constructor(
    private readonly plan: Plan,
    private readonly worker: number,
    private readonly engine: ValueEngine<T>,
    private readonly counters: HostStats,
    private readonly out: Outbox<T>,
    private readonly params: ParamSide<T>,
    private readonly flow: FlowControl,
  ) {
    const { graph, placement } = plan;
    this.nodes = graph.size;
    this.cells = plan.grad.cells;
    this.carriesGradient = edgeGradients(plan);
    for (const id of plan.params) {
      const copies = plan.paramWorkers.get(id)!;
      if (copies.length > 1) (this.copies ??= new Map()).set(id, copies);
    }
    this.table = new Array(graph.size * plan.replicas);
    this.constant = (id: number) => engine.constant(graph.nodeAt(id));
    // What the queue reads of every actor, from its kind: no actor is built for it.
    // Sized for every actor at once (grown by push, half a million entries cost more than the rest).
    const stage = new Int32Array(this.table.length);
    const backward = new Uint8Array(this.table.length);
    const weight = new Uint8Array(this.table.length);
    let n = 0;
    for (let r = 0; r < plan.replicas; r++) {
      const p = placement[r]!;
      for (let id = 0; id < this.nodes; id++) {
        if (p[id] !== worker || !this.hasActor(id)) continue;
        const kind = this.kindOf(id);
        stage[n] = plan.stageOf[id]!;
        backward[n] = kind.hasBackward ? 1 : 0;
        weight[n] = kind.hasWeightPart ? 1 : 0;
        n++;
        if (kind.fixedOnly) this.fixedOnly.push(this.build(r * this.nodes + id)!);
      }
    }
    this.queue = new TaskQueue({
      stage: stage.subarray(0, n),
      backward: backward.subarray(0, n),
      weight: weight.subarray(0, n),
    });
  }

  // Note [actors on first use]
  // A host runs an actor for each node placed on it, half a million per worker on the million-node
  // lane graph placed per node; building them all before the host answered its init was most of a
  // runtime's start. An actor is built when its first message arrives (an input, a contribution, a
  // feed, a parameter), and a step that has started starts it as it is built. What the host needs of
  // every actor before any message (the queue's counts per stage, and the actors fed only by
  // parameters and constants, which no message of a microbatch wakes) comes from the actors' kinds
  // (Note [actor kinds]), and those few actors are built at once. A timeout's list of what every actor
  // waits for builds the others. On that graph a worker's host took about 400 ms to build instead of
  // 850 (figures: docs/measurements.md); the actors' cost moves into the first step.

  private hasActor(id: number): boolean {
    const kind = this.plan.graph.columns.kinds[id];
    return kind !== PARAM && kind !== CONST;
  }

  /**
   * Which of node `id`'s input edges carry a gradient, in an array of its arity that the next call
   * rewrites: `ActorKinds.of` only reads it (a kind keeps a copy), and an array per node was a
   * million short-lived arrays on the host's start.
   */
  private needs(id: number): boolean[] {
    const { inputStart } = this.plan.graph.columns;
    const arity = inputStart[id + 1]! - inputStart[id]!;
    const needs = (this.needsByArity[arity] ??= new Array<boolean>(arity).fill(false));
    for (let s = 0; s < arity; s++) needs[s] = this.carriesGradient(id, s);
    return needs;
  }

  private kindOf(id: number) {
    return this.kinds.of(this.plan.graph, id, this.needs(id), this.plan.grad.expected[id]! > 0);
  }

  /** The actor of (replica * nodes + node) `at`, built now; undefined where this host has none. */
  private build(at: number): NodeActor<T> | undefined {
    const replica = Math.floor(at / this.nodes);
    const id = at - replica * this.nodes;
    if (this.plan.placement[replica]?.[id] !== this.worker || !this.hasActor(id)) return undefined;
    const node = this.plan.graph.nodeAt(id);
    const actor = new NodeActor<T>(this.plan, node, replica, this.needs(id), this.constant, this.kinds);
    this.table[at] = actor;
    this.built.push(actor);
    if (this.microbatches > 0) actor.start(this.microbatches);
    return actor;
  }

  /** The actor of `node` in `replica`, built on first use; undefined where this host has none. */
  private actorAt(at: number): NodeActor<T> | undefined {
    return this.table[at] ?? this.build(at);
  }

  private actor(node: number, replica: number): NodeActor<T> {
    return this.actorAt(replica * this.nodes + node)!;
  }

  /** The actors built so far: the only ones holding values. */
  get actors(): readonly NodeActor<T>[] {
    return this.built;
  }

  /** Every actor of this host, built now if not yet, by replica then node (a timeout's list of what they wait for). */
  everyActor(): NodeActor<T>[] {
    const all: NodeActor<T>[] = [];
    for (let at = 0; at < this.table.length; at++) {
      const actor = this.actorAt(at);
      if (actor !== undefined) all.push(actor);
    }
    return all;
  }

  /** Starts a step of `microbatches` microbatches (after `reset`); `followSchedule` as TaskQueue.start. */
  start(microbatches: number, followSchedule = true): void {
    this.microbatches = microbatches;
    this.queue.start(microbatches, followSchedule);
    for (const a of this.built) a.start(microbatches);
  }

  /** Forgets the step: every actor's state, and the ready tasks. */
  reset(): void {
    for (const a of this.built) a.reset();
    this.queue.clear();
  }

  /** Note [fixed-input nodes]: nodes fed only by constants fire as the step starts. */
  readyAtStart(): void {
    for (const a of this.fixedOnly) for (const mb of a.readyAtStart()) this.queue.enqueue(a, 'forward', mb);
  }

  /** A message of the current step, to the actors it is for. */
  deliver(m: Message<T>, effects: HostEffect<T>[]): void {
    const { start, node: consumer, slot: slotOf } = this.plan.consumerEdges;
    const placement = this.plan.placement;
    switch (m.kind) {
      case 'feed': {
        const actor = this.actorAt(m.replica * this.nodes + m.node);
        if (actor === undefined)
          throw new InputError(`host ${this.worker}: no input actor %${m.node} of replica ${m.replica}`);
        if (actor.fed(m.mb)) this.queue.enqueue(actor, 'forward', m.mb, m.tensor);
        else this.counters.dropped++;
        break;
      }
      case 'activation': {
        this.engine.share(m.tensor);
        const p = placement[m.replica]!;
        // A duplicate is one dropped message, however many consumers here read it.
        let duplicate = false;
        for (let e: number = start[m.node]!; e < start[m.node + 1]!; e++) {
          const c = consumer[e]!;
          const slot = slotOf[e]!;
          if (p[c] !== this.worker) continue;
          const actor = this.actor(c, m.replica);
          if (actor.hasInput(m.mb, slot)) duplicate = true;
          else if (actor.receiveInput(m.mb, slot, m.tensor)) this.queue.enqueue(actor, 'forward', m.mb);
        }
        if (duplicate) this.counters.dropped++;
        else this.flow.arrived(m.node, m.mb, this.engine.bytes(m.tensor));
        break;
      }
      case 'param': {
        this.engine.share(m.tensor);
        let duplicate = false;
        for (let r = 0; r < this.plan.replicas; r++) {
          for (let e: number = start[m.node]!; e < start[m.node + 1]!; e++) {
            const c = consumer[e]!;
            const slot = slotOf[e]!;
            if (placement[r]![c] !== this.worker) continue;
            const actor = this.actor(c, r);
            if (actor.hasParam(slot)) duplicate = true;
            else this.receiveParam(actor, slot, m.tensor);
          }
        }
        if (duplicate) this.counters.dropped++;
        break;
      }
      case 'gradient':
        this.receiveGradient(m.node, m.replica, m.mb, m.consumer, m.slot, m.tensor, m.step, effects);
        break;
    }
  }

  /**
   * A parameter's value for the step, to the consumers of the replicas its copy serves (all of them
   * for a parameter placed once); with `remote` false, to those on this host only (the others got it
   * as the last update ran: Note [parameters sent with the update] in host.ts).
   */
  handOut(param: ParamActor<T>, step: number, effects: HostEffect<T>[], remote = true): void {
    const { placement, replicas } = this.plan;
    const { start, node, slot } = this.plan.consumerEdges;
    for (let r = 0; r < replicas; r++) {
      if (placement[r]![param.node] !== this.worker) continue;
      for (let e = start[param.node]!; e < start[param.node + 1]!; e++) {
        const c = node[e]!;
        if (placement[r]![c] === this.worker) this.receiveParam(this.actor(c, r), slot[e]!, param.value);
      }
    }
    if (remote) this.sendParam(param, step, effects);
  }

  /** A parameter's value for step `step`, to every other worker that holds consumers its copy serves. */
  sendParam(param: ParamActor<T>, step: number, effects: HostEffect<T>[]): void {
    const { placement, replicas } = this.plan;
    const { start, node } = this.plan.consumerEdges;
    const remote = new Set<number>();
    for (let r = 0; r < replicas; r++) {
      if (placement[r]![param.node] !== this.worker) continue;
      for (let e = start[param.node]!; e < start[param.node + 1]!; e++) {
        const w = placement[r]![node[e]!]!;
        if (w !== this.worker) remote.add(w);
      }
    }
    for (const w of remote) {
      const tensor = this.out.copy(param.value);
      effects.push(this.out.send(w, { kind: 'param', step, node: param.node, tensor }));
    }
  }

  /** A forward's output, to its consumers: local actors directly, each other worker once. */
  output(actor: NodeActor<T>, mb: number, output: T, step: number, effects: HostEffect<T>[]): void {
    const { node, replica } = actor;
    const placement = this.plan.placement[replica]!;
    const { start, node: consumerOf, slot } = this.plan.consumerEdges;
    let remote: number[] | null = null;
    for (let e = start[node.id]!; e < start[node.id + 1]!; e++) {
      const c = consumerOf[e]!;
      const w = placement[c]!;
      if (w !== this.worker) {
        if (remote === null) remote = [w];
        else if (!remote.includes(w)) remote.push(w);
        continue;
      }
      this.counters.localMessages++;
      this.engine.share(output);
      const consumer = this.actor(c, replica);
      if (consumer.receiveInput(mb, slot[e]!, output)) this.queue.enqueue(consumer, 'forward', mb);
    }
    if (remote === null) return;
    for (let i = 0; i < remote.length; i++) {
      const tensor = i === remote.length - 1 ? this.out.giveAway(output) : this.out.copy(output);
      effects.push(
        this.out.send(remote[i]!, { kind: 'activation', step, mb, replica, node: node.id, tensor }),
      );
    }
  }

  // Note [owned contributions]
  // A local contribution is marked shared as it arrives (so whoever gives it away later copies it):
  // a VJP may pass its cotangent through, or give two inputs one storage. A parameter's contribution
  // whose storage is its own (unmarked, not the cotangent the VJP read, no other slot's) stays
  // unmarked, as a remote one is sent without a copy: the gradient a parameter reports is then handed
  // over as it is, not copied (a 0.94 MB copy a step for the MNIST MLP, about 5% of its step on one
  // worker; docs/measurements.md).

  /**
   * A backward's contributions, by input slot (null: none), to their producers. Local ones go
   * straight to their actor; remote ones are sent after, as (slot, worker) pairs: a replicated
   * parameter gets one at each of its copies (Note [parameter placement]).
   */
  contributions(
    actor: NodeActor<T>,
    mb: number,
    cotangents: readonly (T | null)[],
    step: number,
    effects: HostEffect<T>[],
    g?: T,
  ): void {
    const { node, replica } = actor;
    let remote: number[] | null = null;
    const placement = this.plan.placement[replica]!;
    for (let slot = 0; slot < cotangents.length; slot++) {
      const value = cotangents[slot];
      if (value === null || value === undefined) continue;
      const producer = node.inputs[slot]!;
      const copies = this.copies?.get(producer);
      if (copies === undefined) {
        const at = placement[producer]!;
        if (at === this.worker) {
          this.counters.localMessages++;
          const owned = this.owned(cotangents, slot, g);
          this.receiveGradient(producer, replica, mb, node.id, slot, value, step, effects, owned);
        } else (remote ??= []).push(slot, at);
        continue;
      }
      for (const w of copies) {
        if (w === this.worker) {
          this.counters.localMessages++;
          this.receiveGradient(producer, replica, mb, node.id, slot, value, step, effects);
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
      const tensor = later ? this.out.copy(value) : this.out.giveAway(value);
      const producer = node.inputs[slot]!;
      effects.push(
        this.out.send(remote[i + 1]!, {
          kind: 'gradient',
          step,
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

  /**
   * Whether the contribution of `slot` has its storage to itself (Note [owned contributions]): not
   * marked shared, not the cotangent `g` the VJP read (nor anything else unknown: no `g`), and no
   * other slot's contribution.
   */
  private owned(cotangents: readonly (T | null)[], slot: number, g: T | undefined): boolean {
    const value = cotangents[slot]!;
    const { engine } = this;
    if (g === undefined || engine.isShared(value) || engine.sameStorage(value, g)) return false;
    for (let k = 0; k < cotangents.length; k++) {
      const other = cotangents[k];
      if (k !== slot && other !== null && other !== undefined && engine.sameStorage(other, value))
        return false;
    }
    return true;
  }

  private receiveParam(actor: NodeActor<T>, slot: number, value: T): void {
    for (const mb of actor.receiveParam(slot, value)) this.queue.enqueue(actor, 'forward', mb);
  }

  /** The contribution of input `slot` of `consumer` to `node`'s gradient. */
  private receiveGradient(
    node: number,
    replica: number,
    mb: number,
    consumer: number,
    slot: number,
    value: T,
    step: number,
    effects: HostEffect<T>[],
    owned = false,
  ): void {
    const cell = this.cells.cell[this.cells.slotBase[consumer]! + slot]!;
    // Actors first: an array index, where parameters take a map lookup.
    const actor = this.actorAt(replica * this.nodes + node);
    if (actor === undefined) {
      // Note [owned contributions]: a parameter's own contribution stays unmarked, and its gradient
      // is reported without a copy.
      if (!owned) this.engine.share(value);
      this.params.receive(node, replica, mb, cell, value, step, effects);
      return;
    }
    this.engine.share(value);
    // A contribution whose cell is already filled is a duplicate (a message sent twice): dropped, counted.
    if (actor.hasGradient(mb, cell)) this.counters.dropped++;
    else if (actor.receiveGradient(mb, cell, value)) this.queue.enqueue(actor, 'backward', mb);
  }
}
