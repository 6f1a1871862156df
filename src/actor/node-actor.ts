import type { Node } from '../graph/graph.ts';
import { getOp } from '../ops/registry.ts';
import { savesInput } from '../ops/op.ts';
import type { Plan } from '../partition/plan.ts';

/** A gradient contribution waiting at a node: from input `slot` of `consumer`. */
export interface Contribution<T> {
  readonly consumer: number;
  readonly slot: number;
  readonly value: T;
}

/** Where each input slot's value comes from. */
export type SlotKind = 'const' | 'param' | 'microbatch';

/** What one node actor holds for one microbatch of the step. */
export interface MicrobatchState<T> {
  readonly inputs: (T | undefined)[];
  /** Per-microbatch inputs still to arrive. */
  missing: number;
  fired: boolean;
  /** Values the VJP reads, by node id (inputs and/or output), held from forward to backward. */
  kept: Map<number, T> | null;
  contributions: Contribution<T>[];
  /** The summed cotangent, held between the input part and the weight part of a split backward. */
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
  /** Whether a split backward has a weight part to run for this node. */
  readonly hasWeightPart: boolean;
  readonly microbatches = new Map<number, MicrobatchState<T>>();

  constructor(plan: Plan, node: Node, replica: number, needs: readonly boolean[], constant: (id: number) => T) {
    const nodes = plan.graph.nodes;
    this.node = node;
    this.replica = replica;
    this.stage = plan.stageOf[node.id]!;
    this.slots = node.inputs.map((i) => {
      const op = nodes[i]!.op;
      return op === 'const' ? 'const' : op === 'param' ? 'param' : 'microbatch';
    });
    this.fixed = node.inputs.map((i, s) => (this.slots[s] === 'const' ? constant(i) : undefined));
    this.mbSlots = this.slots.filter((k) => k === 'microbatch').length;
    this.expected = plan.grad.expected[node.id]!;
    this.needs = needs;
    this.runsVjp = needs.includes(true);
    // An op that says its VJP does not split runs all of it in the input part.
    const splits = node.inputs.length > 0 && getOp(node.op).splitVjp !== false;
    this.needsWeight = needs.map((n, s) => n && splits && this.slots[s] === 'param');
    this.needsInput = needs.map((n, s) => n && !this.needsWeight[s]);
    this.hasWeightPart = this.needsWeight.includes(true);
  }

  state(mb: number): MicrobatchState<T> {
    let s = this.microbatches.get(mb);
    if (s === undefined) {
      s = { inputs: new Array(this.slots.length).fill(undefined), missing: this.mbSlots, fired: false, kept: null, contributions: [], g: null };
      this.microbatches.set(mb, s);
    }
    return s;
  }

  paramsReady(): boolean {
    for (let s = 0; s < this.slots.length; s++) if (this.slots[s] === 'param' && this.fixed[s] === undefined) return false;
    return true;
  }

  /** Stores a per-microbatch input; true when the forward may now fire. */
  receiveInput(mb: number, slot: number, value: T): boolean {
    const s = this.state(mb);
    if (s.inputs[slot] === undefined) s.missing--;
    s.inputs[slot] = value;
    return s.missing === 0 && !s.fired && this.paramsReady();
  }

  /** Stores a parameter input for the step; returns the microbatches whose forward may now fire. */
  receiveParam(slot: number, value: T): number[] {
    this.fixed[slot] = value;
    if (!this.paramsReady()) return [];
    const ready: number[] = [];
    for (const [mb, s] of this.microbatches) if (s.missing === 0 && !s.fired) ready.push(mb);
    return ready;
  }

  /** The forward's arguments for a microbatch. */
  arguments(mb: number): T[] {
    const s = this.state(mb);
    return this.slots.map((k, i) => (k === 'microbatch' ? s.inputs[i]! : this.fixed[i]!));
  }

  /** After the forward: keep what the VJP reads, drop the rest. */
  afterForward(mb: number, args: readonly T[], output: T): void {
    const s = this.state(mb);
    s.fired = true;
    s.inputs.fill(undefined);
    if (!this.runsVjp) {
      this.microbatches.delete(mb);
      return;
    }
    const def = getOp(this.node.op);
    const kept = new Map<number, T>();
    this.node.inputs.forEach((input, i) => {
      if (savesInput(def, i)) kept.set(input, args[i]!);
    });
    if (def.saves.output) kept.set(this.node.id, output);
    s.kept = kept;
  }

  /** Stores a gradient contribution; true when every owed contribution has arrived. */
  receiveGradient(mb: number, c: Contribution<T>): boolean {
    const s = this.state(mb);
    s.contributions.push(c);
    return s.contributions.length === this.expected && s.fired;
  }

  /** After the last part of the VJP: free everything held for the microbatch. */
  afterBackward(mb: number): void {
    this.microbatches.delete(mb);
  }

  /** Forgets the step: per-microbatch state and parameter values. */
  reset(): void {
    this.microbatches.clear();
    for (let s = 0; s < this.slots.length; s++) if (this.slots[s] === 'param') this.fixed[s] = undefined;
  }
}
