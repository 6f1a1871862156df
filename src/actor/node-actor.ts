import { sumCells } from '../autodiff/backprop.ts';
import { CONST, PARAM } from '../graph/columns.ts';
import { type Graph, isLeaf, type Node } from '../graph/graph.ts';
import type { OpDef } from '../ops/op.ts';
import type { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import { keptSlots } from '../partition/memory.ts';
import type { Plan } from '../partition/plan.ts';

/** Where each input slot's value comes from. */
export type SlotKind = 'const' | 'param' | 'microbatch';

/** What one node actor holds for one microbatch of the step. */
export interface MicrobatchState<T> {
  /** Per-microbatch inputs by slot; during the forward, the arguments (fixed ones filled in). */
  readonly inputs: (T | undefined)[];
  /** Per-microbatch inputs still to arrive. */
  missing: number;
  fired: boolean;
  /** Values the VJP reads, parallel to the actor's `keptIds`, held from forward to backward. */
  readonly kept: (T | undefined)[];
  /** Gradient contributions in their cells (Note [gradient cells]), and how many arrived. */
  readonly cells: (T | undefined)[];
  received: number;
  /** The cotangent: the loss's seed, or the sum held between the input and weight parts of a split backward. */
  g: T | null;
}

/**
 * The state machine of one node of one replica: pure data and transitions, no messaging. The host
 * feeds it inputs and contributions; it says when its forward and its VJP may run (Note [reverse order
 * by counting]) and what the backward must keep.
 */
export class NodeActor<T> {
  readonly node: Node;
  readonly replica: number;
  readonly stage: number;
  readonly slots: readonly SlotKind[];
  /** Const inputs (from the graph) and parameter inputs (per step). */
  readonly fixed: (T | undefined)[];
  readonly mbSlots: number;
  /** Gradient contributions owed per microbatch before the VJP may run. */
  readonly expected: number;
  /** Which inputs get a gradient: all of them, the activations only (input part), the parameters only (weight part). */
  readonly needs: readonly boolean[];
  readonly needsInput: readonly boolean[];
  readonly needsWeight: readonly boolean[];
  /** Whether the VJP runs at all (the node is on a path from a parameter to the loss). */
  readonly runsVjp: boolean;
  /**
   * An input named in `wrt`: its gradient, the sum of its contributions, is reported per microbatch
   * (Note [input gradients]). Its backward task runs no VJP.
   */
  readonly reportsGradient: boolean;
  /** Whether a backward task runs for this actor per microbatch: a VJP, or a reported gradient. */
  readonly hasBackward: boolean;
  /**
   * Fed only by parameters and constants, or by nothing (`transpose(W)`, `sum(square(w))`, `exp(c)`,
   * `dimSize`): no message of a microbatch arrives for it, so its forward becomes ready per
   * microbatch when the step starts and its parameters are there (Note [fixed-input nodes]).
   */
  readonly fixedOnly: boolean;
  /** Whether a split backward has a weight part to run for this node. */
  readonly hasWeightPart: boolean;
  /** The node's op (looked up once, not per task); undefined for a node without inputs. */
  readonly def: OpDef | undefined;
  /** The node ids whose values the VJP reads (each once), and where the forward finds them: an input slot, or -1 for its output. */
  readonly keptIds: readonly number[];
  private readonly keptFrom: readonly number[];
  /**
   * Parallel to `keptIds`: whether the kept value is the microbatch's own (an activation or the
   * output), not a parameter or a constant held for the whole step anyway. Only these count as kept
   * bytes (Note [memory budget]).
   */
  readonly keptPerMicrobatch: readonly boolean[];
  /** Per-microbatch state of the step, by microbatch (dense: sized when the step starts). */
  microbatches: (MicrobatchState<T> | undefined)[] = NO_VALUES;
  /** States of finished microbatches, emptied, for the next ones: a long pipeline makes millions. */
  private free: MicrobatchState<T>[] | null = null;
  private live = 0;
  /**
   * Microbatches whose forward ran (or whose feed arrived) this step: `ran[mb] === epoch`. A new
   * epoch per step forgets them all without a pass over the array (a step starts every actor).
   */
  private ran = NOT_RUN;
  private epoch = 1;

  constructor(
    plan: Plan,
    node: Node,
    replica: number,
    needs: readonly boolean[],
    constant: (id: number) => T,
    kinds: ActorKinds = new ActorKinds(),
  ) {
    this.node = node;
    this.replica = replica;
    this.stage = plan.stageOf[node.id]!;
    this.expected = plan.grad.expected[node.id]!;
    const kind = kinds.of(plan.graph, node.id, needs, this.expected > 0);
    this.slots = kind.slots;
    this.mbSlots = kind.mbSlots;
    this.needs = kind.needs;
    this.runsVjp = kind.runsVjp;
    this.reportsGradient = kind.reportsGradient;
    this.hasBackward = kind.hasBackward;
    this.fixedOnly = kind.fixedOnly;
    this.def = kind.def;
    this.needsWeight = kind.needsWeight;
    this.needsInput = kind.needsInput;
    this.hasWeightPart = kind.hasWeightPart;
    this.keptFrom = kind.keptFrom;
    this.keptPerMicrobatch = kind.keptPerMicrobatch;
    this.keptIds =
      this.keptFrom.length === 0 ? NONE : this.keptFrom.map((s) => (s === -1 ? node.id : node.inputs[s]!));
    // Only an actor with const or parameter inputs writes `fixed`; the others share one empty list.
    this.fixed =
      kind.mbSlots === kind.slots.length
        ? NO_VALUES
        : node.inputs.map((i, s) => (this.slots[s] === 'const' ? constant(i) : undefined));
  }

  /** Starts a step of `microbatches` microbatches (after `reset`). */
  start(microbatches: number): void {
    if (this.microbatches.length !== microbatches) {
      this.microbatches = new Array(microbatches);
      this.ran = new Int32Array(microbatches);
    }
    this.epoch++;
  }

  // Note [fixed-input nodes]
  // A node fires when the last of its per-microbatch inputs arrives and its parameters are there.
  // A node fed only by parameters and constants gets no per-microbatch input, so that trigger never
  // comes: it fires for every microbatch once its last parameter arrives (`receiveParam`), or, with
  // no parameter at all, when the step starts (`readyAtStart`). It still runs once per (microbatch,
  // replica) like every other node, so its contributions are summed exactly as the reference does.
  // The host drops a duplicate parameter message (`hasParam`); `ran` keeps a microbatch whose
  // forward ran from firing again.

  /** The microbatches whose forward may fire as the step starts: every one, for a node fed only by constants. */
  readyAtStart(): number[] {
    return this.fixedOnly && !this.slots.includes('param') ? this.notRun() : [];
  }

  private notRun(): number[] {
    const out: number[] = [];
    for (let mb = 0; mb < this.ran.length; mb++) if (this.ran[mb] !== this.epoch) out.push(mb);
    return out;
  }

  /**
   * An input node's fed value arrived for `mb`: its gradient, if it reports one, may now complete.
   * False for a second feed of the microbatch (a duplicate).
   */
  fed(mb: number): boolean {
    if (this.ran[mb] === this.epoch) return false;
    this.ran[mb] = this.epoch;
    if (this.reportsGradient) this.state(mb).fired = true;
    return true;
  }

  /** True when `mb`'s forward ran (or its feed arrived) this step. */
  hasRun(mb: number): boolean {
    return this.ran[mb] === this.epoch;
  }

  state(mb: number): MicrobatchState<T> {
    let s = this.microbatches[mb];
    if (s === undefined) {
      s = this.free?.pop() ?? {
        inputs: new Array(this.slots.length).fill(undefined),
        missing: 0,
        fired: false,
        kept: new Array(this.keptIds.length).fill(undefined),
        cells: new Array(this.expected).fill(undefined),
        received: 0,
        g: null,
      };
      s.missing = this.mbSlots;
      this.microbatches[mb] = s;
      this.live++;
    }
    return s;
  }

  /** Done with a microbatch: its state is emptied (so it holds no value) and kept for another one. */
  private release(mb: number, s: MicrobatchState<T>): void {
    empty(s.inputs);
    empty(s.kept);
    empty(s.cells);
    s.fired = false;
    s.received = 0;
    s.g = null;
    this.microbatches[mb] = undefined;
    (this.free ??= []).push(s);
    this.live--;
  }

  paramsReady(): boolean {
    for (let s = 0; s < this.slots.length; s++)
      if (this.slots[s] === 'param' && this.fixed[s] === undefined) return false;
    return true;
  }

  /** Stores a per-microbatch input; true when the forward may now fire. */
  receiveInput(mb: number, slot: number, value: T): boolean {
    const s = this.state(mb);
    s.missing--;
    s.inputs[slot] = value;
    return s.missing === 0 && !s.fired && this.paramsReady();
  }

  /** True when input `slot` of `mb` already arrived (or the forward already ran): a duplicate. */
  hasInput(mb: number, slot: number): boolean {
    if (this.ran[mb] === this.epoch) return true;
    const s = this.state(mb);
    return s.fired || s.inputs[slot] !== undefined;
  }

  /** True when the parameter of `slot` already arrived this step: a duplicate (so is one for a slot that reads no parameter). */
  hasParam(slot: number): boolean {
    return this.slots[slot] !== 'param' || this.fixed[slot] !== undefined;
  }

  /** Stores a parameter input for the step; returns the microbatches whose forward may now fire. */
  receiveParam(slot: number, value: T): number[] {
    if (this.slots[slot] !== 'param') return [];
    this.fixed[slot] = value;
    if (!this.paramsReady()) return [];
    if (this.fixedOnly) return this.notRun();
    const ready: number[] = [];
    for (let mb = 0; mb < this.microbatches.length; mb++) {
      const s = this.microbatches[mb];
      if (s !== undefined && s.missing === 0 && !s.fired) ready.push(mb);
    }
    return ready;
  }

  /**
   * The forward's arguments for a microbatch: the state's input array with the const and parameter
   * values filled in (one array per microbatch state, not one per forward). Valid until `afterForward`.
   */
  arguments(mb: number): readonly T[] {
    const s = this.state(mb);
    for (let i = 0; i < this.slots.length; i++)
      if (this.slots[i] !== 'microbatch') s.inputs[i] = this.fixed[i];
    // Complete now: every per-microbatch input arrived and the parameters are there.
    return s.inputs as readonly T[];
  }

  /**
   * After the forward: keep what the VJP reads (in `state(mb).kept`), drop the rest. `keep` false
   * (an inference step, which runs no backward): keep nothing.
   */
  afterForward(mb: number, output: T, keep = this.runsVjp): void {
    const s = this.state(mb);
    this.ran[mb] = this.epoch;
    if (!keep) {
      this.release(mb, s);
      return;
    }
    s.fired = true;
    for (let k = 0; k < this.keptFrom.length; k++) {
      const from = this.keptFrom[k]!;
      s.kept[k] = from === -1 ? output : s.inputs[from];
    }
    empty(s.inputs);
  }

  /** True when cell `cell` of `mb` is already filled, or every owed contribution is in: a duplicate. */
  hasGradient(mb: number, cell: number): boolean {
    // No state after the forward ran: the backward ran too, and everything owed is in.
    if (this.microbatches[mb] === undefined && this.ran[mb] === this.epoch) return true;
    const s = this.state(mb);
    return s.cells[cell] !== undefined || (this.expected > 0 && s.received >= this.expected);
  }

  /** Stores the contribution of cell `cell` (Note [gradient cells]); true when every owed one has arrived. */
  receiveGradient(mb: number, cell: number, value: T): boolean {
    const s = this.state(mb);
    s.cells[cell] = value;
    return ++s.received === this.expected && s.fired;
  }

  /** The loss's seed (Note [microbatch scaling]): its cotangent, owed by no consumer. */
  seed(mb: number, value: T): void {
    this.state(mb).g = value;
  }

  /** The cotangent of a microbatch whose contributions are all in: the seed, a held sum, or the sum of the cells. */
  cotangent(ops: Ops<T>, mb: number): T {
    const s = this.state(mb);
    return s.g ?? (this.expected === 1 ? s.cells[0]! : sumCells(ops, s.cells));
  }

  /** Between the parts of a split backward: holds the summed cotangent, and lets the contributions go. */
  holdCotangent(mb: number, g: T): void {
    const s = this.state(mb);
    s.g = g;
    empty(s.cells);
  }

  /** After the last part of the VJP: free everything held for the microbatch. */
  afterBackward(mb: number): void {
    const s = this.microbatches[mb];
    if (s !== undefined) this.release(mb, s);
  }

  /** Calls `f` on every value this actor holds: fixed inputs, and each live microbatch's (Note [step arena]). */
  held(f: (value: T | undefined | null) => void): void {
    for (let s = 0; s < this.fixed.length; s++) f(this.fixed[s]);
    if (this.live === 0) return;
    for (const s of this.microbatches) {
      if (s === undefined) continue;
      for (const v of s.inputs) f(v);
      for (const v of s.kept) f(v);
      for (const v of s.cells) f(v);
      f(s.g);
    }
  }

  /** Forgets the step: per-microbatch state and parameter values. */
  reset(): void {
    if (this.live > 0) {
      for (let mb = 0; mb < this.microbatches.length; mb++) {
        const s = this.microbatches[mb];
        if (s !== undefined) this.release(mb, s);
      }
    }
    for (let s = 0; s < this.slots.length; s++) if (this.slots[s] === 'param') this.fixed[s] = undefined;
    this.epoch++;
  }
}

const NONE: readonly number[] = [];
/** Shared, never written: see the constructor and `start`. */
const NO_VALUES: never[] = [];
const NOT_RUN = new Int32Array(0);

/** What every actor of one kind shares: its node's op, where each input comes from, which get a gradient. */
export interface ActorKind {
  readonly slots: readonly SlotKind[];
  readonly mbSlots: number;
  readonly needs: readonly boolean[];
  readonly needsInput: readonly boolean[];
  readonly needsWeight: readonly boolean[];
  readonly runsVjp: boolean;
  readonly reportsGradient: boolean;
  readonly hasBackward: boolean;
  readonly fixedOnly: boolean;
  readonly hasWeightPart: boolean;
  readonly def: OpDef | undefined;
  readonly keptFrom: readonly number[];
  readonly keptPerMicrobatch: readonly boolean[];
}

// Note [actor kinds]
// A host builds an actor for every node it runs: half a million on each of 2 workers for the
// million-node lane graph placed per node. Each had a dozen small arrays of its own (where its inputs
// come from, which get a gradient, what its VJP keeps), all alive for the runtime's life, so building
// them was mostly the collector copying them from the young generation to the old one. Those arrays
// depend only on the node's op, its inputs' kinds, which inputs are the same node and which edges
// carry a gradient, so actors of one kind share one set; the lane graph has a handful of kinds.

/** The kinds of a host's actors, each made once (Note [actor kinds]). */
export class ActorKinds {
  /** By op, then by a key of everything else the kind depends on. */
  private readonly kinds = new Map<string, Map<number | string, ActorKind>>();

  /**
   * The kind of node `id`, read from the graph's columns: the node is made only for a kind not seen
   * yet. `needs` is read, never kept (a new kind copies it).
   */
  of(graph: Graph, id: number, needs: readonly boolean[], owed: boolean): ActorKind {
    const { inputStart, inputIds, kinds } = graph.columns;
    const i0 = inputStart[id]!;
    const arity = inputStart[id + 1]! - i0;
    // Per slot: the input's kind, whether it gets a gradient, and the slot of its first reading (a
    // node may read one value twice: x * x). Up to SMALL slots pack into a number, 6 bits a slot and
    // then the count of slots, so that no two keys share one (below 2^47: exact); more, a string.
    let packed = owed ? 1 : 0;
    let wide = owed ? '+' : '-';
    for (let s = 0; s < arity; s++) {
      const k = kinds[inputIds[i0 + s]!];
      let first = 0;
      while (inputIds[i0 + first] !== inputIds[i0 + s]) first++;
      const from = k === CONST ? 1 : k === PARAM ? 2 : 0;
      if (arity <= SMALL) packed = packed * 64 + from * 16 + (needs[s] ? 8 : 0) + first;
      else wide += `${from}${needs[s] ? 1 : 0}${first},`;
    }
    const key = arity <= SMALL ? packed * 16 + arity : wide;
    const op = graph.opOf(id);
    let byOp = this.kinds.get(op);
    if (byOp === undefined) this.kinds.set(op, (byOp = new Map()));
    let kind = byOp.get(key);
    if (kind === undefined) {
      kind = makeKind(graph, graph.nodeAt(id), needs, owed);
      byOp.set(key, kind);
    }
    return kind;
  }
}

/** Ops of at most this many inputs have their kinds keyed by a number (ActorKinds). */
const SMALL = 7;

function makeKind(graph: Graph, node: Node, needs: readonly boolean[], owed: boolean): ActorKind {
  const kinds = graph.columns.kinds;
  const slots: SlotKind[] = node.inputs.map((i) =>
    kinds[i] === CONST ? 'const' : kinds[i] === PARAM ? 'param' : 'microbatch',
  );
  const mbSlots = slots.filter((k) => k === 'microbatch').length;
  const runsVjp = needs.includes(true);
  const reportsGradient = node.op === 'input' && owed;
  const def = isLeaf(node) ? undefined : getOp(node.op);
  // An op that says its VJP does not split runs all of it in the input part.
  const splits = def !== undefined && def.splitVjp !== false;
  const needsWeight = needs.map((n, s) => n && splits && slots[s] === 'param');
  // The rule the memory estimate counts by (Note [memory budget]).
  const keptFrom = keptSlots(node, def, runsVjp);
  return {
    slots,
    mbSlots,
    needs: [...needs],
    needsInput: needs.map((n, s) => n && !needsWeight[s]),
    needsWeight,
    runsVjp,
    reportsGradient,
    hasBackward: runsVjp || reportsGradient,
    fixedOnly: node.op !== 'input' && mbSlots === 0,
    hasWeightPart: needsWeight.includes(true),
    def,
    keptFrom,
    keptPerMicrobatch: keptFrom.map((s) => s === -1 || slots[s] === 'microbatch'),
  };
}

/** Clears a short array in place (these hold a few values: a plain loop is cheaper than a `fill` call). */
function empty<X>(values: (X | undefined)[]): void {
  for (let i = 0; i < values.length; i++) values[i] = undefined;
}
