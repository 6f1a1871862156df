import { GradientError } from '../errors.ts';
import { type Graph, label, type NodeRef } from '../graph/graph.ts';
import { type OpDef, savesInput } from '../ops/op.ts';
import { sharedColumn } from '../util/shared-memory.ts';
import { ancestors } from './forward.ts';

/**
 * What a gradient computation needs to know about a graph, computed once:
 * - `forward`: the mask of nodes the loss depends on (only they are computed);
 * - `needsGrad`: the nodes on a differentiable path from some `wrt` to the loss (each one but the
 *   loss receives at least one contribution);
 * - `expected[id]`: how many gradient contributions node id receives (one per differentiable edge
 *   to a consumer that needs a gradient). Reverse order is enforced by counting these.
 * - `disconnected`: the `wrt` nodes no differentiable path joins to the loss (zero gradient);
 * - `cells`: where every contribution goes (Note [gradient cells]), laid out on first use.
 */
export interface GradPlan {
  readonly loss: number;
  readonly wrt: readonly number[];
  readonly forward: Uint8Array;
  readonly needsGrad: Uint8Array;
  readonly expected: Int32Array;
  readonly disconnected: readonly number[];
  readonly cells: GradientCells;
}

// Note [gradient cells]
// The contributions a node is owed have fixed places, its *cells*: cell k holds the contribution of
// the k-th gradient-carrying edge among the node's consumer edges, taken by consumer id, then slot.
// That is the order of Note [canonical sum order], so summing the cells left to right is the
// canonical sum whatever order the contributions arrived in: no sorting, no list of (consumer,
// slot, value) records per contribution. The reference sweep keeps one table of every node's cells,
// node id's from `first[id]` to `first[id + 1]`; an actor keeps its own node's. The gradient plan
// lays the cells out once, and every engine and host reads the same layout.

/**
 * The layout of Note [gradient cells]. The edge (consumer c, slot s) is `slotBase[c] + s`; its
 * contribution goes to cell `cell[slotBase[c] + s]` of its producer (-1: the edge carries none).
 */
export interface GradientCells {
  readonly slotBase: Int32Array;
  readonly cell: Int32Array;
  /** Where node id's cells start in a table of every node's cells (prefix sums of `expected`). */
  readonly first: Int32Array;
}

/** True when a gradient can flow from `consumer` back into its input slot `slot`. */
export function edgeCarriesGrad(def: OpDef, slot: number): boolean {
  return def.vjp !== undefined && !(def.nondiff?.includes(slot) ?? false);
}

// Note [edge facts]
// The passes of a gradient computation (planGradient's, the cell layout, the saved counts and the
// sweep's frees) ask of every edge whether a gradient flows through it and whether its consumer's
// VJP reads it, and of every node whether its VJP reads its output. Each question read the op's
// definition, objects of many shapes (a megamorphic load per edge and pass): on a million-node
// graph these reads were most of valueAndGrad's planning. The answers depend on the graph alone,
// so they are columns made once per graph, one definition lookup per node (valueAndGrad's planning
// of the million-node graph bench: 172 -> 142 ms, medians of 6; docs/measurements.md).

/** Per edge and per node answers of Note [edge facts], indexed like the graph's columns. */
export interface EdgeFacts {
  /** 1 where a gradient can flow from the edge's consumer into its input (`edgeCarriesGrad`). */
  readonly carries: Uint8Array;
  /** 1 where the consumer's VJP reads the edge's input (`savesInput`). */
  readonly saved: Uint8Array;
  /** 1 for a node whose VJP reads its output (`saves.output`). */
  readonly savesOutput: Uint8Array;
}

const factsByGraph = new WeakMap<Graph, EdgeFacts>();

/** The edge facts of a graph (Note [edge facts]), made on first use. */
export function edgeFacts(graph: Graph): EdgeFacts {
  let facts = factsByGraph.get(graph);
  if (facts !== undefined) return facts;
  const defs = graph.defs;
  const { inputStart, inputIds } = graph.columns;
  const n = graph.size;
  const carries = new Uint8Array(inputIds.length);
  const saved = new Uint8Array(inputIds.length);
  const savesOutput = new Uint8Array(n);
  // A definition's answers by slot, as bits (arity up to 30), found once per definition.
  const masks = new Map<OpDef, { carries: number; saved: number; output: number }>();
  for (let id = 0; id < n; id++) {
    const def = defs[id];
    if (def === undefined) continue;
    const base = inputStart[id]!;
    const arity = inputStart[id + 1]! - base;
    if (arity > 30) {
      for (let s = 0; s < arity; s++) {
        carries[base + s] = edgeCarriesGrad(def, s) ? 1 : 0;
        saved[base + s] = savesInput(def, s) ? 1 : 0;
      }
      savesOutput[id] = def.saves.output ? 1 : 0;
      continue;
    }
    let m = masks.get(def);
    if (m === undefined) {
      m = { carries: 0, saved: 0, output: def.saves.output ? 1 : 0 };
      for (let s = 0; s < 30; s++) {
        if (edgeCarriesGrad(def, s)) m.carries |= 1 << s;
        if (savesInput(def, s)) m.saved |= 1 << s;
      }
      masks.set(def, m);
    }
    for (let s = 0; s < arity; s++) {
      carries[base + s] = (m.carries >>> s) & 1;
      saved[base + s] = (m.saved >>> s) & 1;
    }
    savesOutput[id] = m.output;
  }
  facts = { carries, saved, savesOutput };
  factsByGraph.set(graph, facts);
  return facts;
}

export function planGradient(graph: Graph, loss: NodeRef, wrt: readonly NodeRef[]): GradPlan {
  const lossNode = graph.node(loss);
  const wrtIds = wrt.map((r) => graph.node(r).id);
  const seen = new Set<number>();
  for (const id of wrtIds) {
    if (seen.has(id))
      throw new GradientError(`wrt names ${label(graph.nodeAt(id))} twice`, {
        node: label(graph.nodeAt(id)),
      });
    seen.add(id);
  }
  const n = graph.size;
  const defs = graph.defs;
  const forward = ancestors(graph, [lossNode.id]);
  // Descendants of wrt along edges a gradient can flow through.
  const desc = new Uint8Array(n);
  let low = n;
  for (const id of wrtIds) {
    desc[id] = 1;
    if (id < low) low = id;
  }
  const { inputStart, inputIds } = graph.columns;
  const { carries } = edgeFacts(graph);
  for (let id = low + 1; id <= lossNode.id; id++) {
    if (desc[id] === 1 || forward[id] === 0 || defs[id] === undefined) continue;
    for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) {
      if (desc[inputIds[e]!] === 1 && carries[e] === 1) {
        desc[id] = 1;
        break;
      }
    }
  }
  // Ancestors of the loss along edges a gradient can flow through: a node outside them can be an
  // ancestor of the loss (through sign, greater, stopGradient ...) and still receive nothing.
  const asc = new Uint8Array(n);
  asc[lossNode.id] = 1;
  for (let id = lossNode.id; id >= 0; id--) {
    if (asc[id] === 0 || defs[id] === undefined) continue;
    for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) if (carries[e] === 1) asc[inputIds[e]!] = 1;
  }
  // These two a plan ships to worker threads (Note [columns in shared memory]).
  const needsGrad = sharedColumn(Uint8Array, n);
  for (let id = 0; id <= lossNode.id; id++) needsGrad[id] = desc[id]! & asc[id]!;
  const expected = sharedColumn(Int32Array, n);
  for (let id = lossNode.id; id >= 0; id--) {
    if (needsGrad[id] === 0 || defs[id] === undefined) continue;
    for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) {
      const input = inputIds[e]!;
      if (needsGrad[input] === 1 && carries[e] === 1) expected[input]!++;
    }
  }
  const disconnected = wrtIds.filter(
    (id) => needsGrad[id] === 0 || (id !== lossNode.id && expected[id] === 0),
  );
  return gradPlanOf(graph, { loss: lossNode.id, wrt: wrtIds, forward, needsGrad, expected, disconnected });
}

/** A gradient plan from its arrays (planGradient's, or a plan's shipped as columns): cells laid out on first use. */
export function gradPlanOf(graph: Graph, parts: Omit<GradPlan, 'cells'>): GradPlan {
  const { loss, needsGrad, expected } = parts;
  // Laid out on first use: a coordinator that only places the graph never reads them.
  let cells: GradientCells | null = null;
  return {
    loss,
    wrt: parts.wrt,
    forward: parts.forward,
    needsGrad,
    expected,
    disconnected: parts.disconnected,
    get cells() {
      cells ??= layCells(graph, loss, needsGrad, expected);
      return cells;
    },
  };
}

/** Hands out cells walking consumers by increasing id and their slots in order: the canonical order. */
function layCells(graph: Graph, loss: number, needsGrad: Uint8Array, expected: Int32Array): GradientCells {
  const defs = graph.defs;
  const n = graph.size;
  const first = new Int32Array(n + 1);
  for (let id = 0; id < n; id++) first[id + 1] = first[id]! + expected[id]!;
  // The edges are numbered as the graph's columns number them (Note [graph columns]).
  const { inputStart: slotBase, inputIds } = graph.columns;
  const { carries } = edgeFacts(graph);
  const cell = new Int32Array(slotBase[n]!).fill(-1);
  const filled = new Int32Array(n);
  // No node past the loss needs a gradient.
  for (let id = 0; id <= loss; id++) {
    if (needsGrad[id] === 0 || defs[id] === undefined) continue;
    for (let e = slotBase[id]!; e < slotBase[id + 1]!; e++) {
      const input = inputIds[e]!;
      if (needsGrad[input] === 1 && carries[e] === 1) cell[e] = filled[input]!++;
    }
  }
  return { slotBase, cell, first };
}

/** Warns once for each `wrt` node the loss does not depend on (its gradient is zero). */
export function warnDisconnected(graph: Graph, plan: GradPlan, onWarning?: (message: string) => void): void {
  const warn = onWarning ?? ((m: string) => process.emitWarning(m, 'BackflowWarning'));
  for (const id of plan.disconnected) {
    warn(
      `${label(graph.nodeAt(id))} is not connected to the loss ${label(graph.nodeAt(plan.loss))}: its gradient is zero`,
    );
  }
}
