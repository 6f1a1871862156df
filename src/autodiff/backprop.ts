import type { Graph } from '../graph/graph.ts';
import type { Ops } from '../ops/ops.ts';
import type { GradPlan } from './plan.ts';
import { runVjp, type VjpSource } from './vjp.ts';

/**
 * Hooks an engine gives the sweep: where primal values and shapes come from (`VjpSource`: engines that
 * bind symbolic dimensions give bound shapes), and when values may be freed.
 */
export interface SweepHooks<T> extends VjpSource<T> {
  /** Node id's VJP has run: what it kept may be freed. */
  visited?(id: number): void;
  /**
   * A gradient becoming live (+1: a contribution, the seed, a sum of contributions) or dead (-1: summed,
   * or its node's VJP has run), for memory accounting.
   */
  held?(value: T, sign: 1 | -1): void;
}

// Note [canonical sum order]
// A node's gradient is the sum of one contribution per consumer edge. They are added in a fixed
// order: by consumer id, then by input slot, never in the order they arrived. Floating-point addition
// is not associative, so this order is what makes every engine that follows it (this one, gradGraph,
// and the actor runtime, whatever the timing of its messages) agree bit for bit. The sweep and the
// actors put each contribution into its fixed cell (Note [gradient cells]): summing the cells left
// to right is the canonical sum whatever order the contributions came in (`sumCells`).

/**
 * The reverse sweep, written once for every engine (T = Tensor computes, T = Node builds a graph).
 * Nodes are visited in exactly reverse topological order; each needed node's gradient is the
 * canonical sum of its contributions (one per consumer edge, in the cells of the gradient table);
 * its VJP puts one contribution in the cell of each edge that needs one.
 * Returns the gradient of every `wrt` node connected to the loss.
 */
export function sweep<T>(
  graph: Graph,
  plan: GradPlan,
  ops: Ops<T>,
  seed: T,
  hooks: SweepHooks<T>,
): Map<number, T> {
  // The node whose VJP runs, read from the columns: runVjp does not keep it.
  const read = graph.reader();
  const defs = graph.defs;
  const { needsGrad } = plan;
  const { first, slotBase, cell } = plan.cells;
  const { inputIds, inputStart } = graph.columns;
  // Where each VJP finds its node's inputs, one object for the sweep (runVjp reads it at once).
  const at: { id: number; inputStart: Int32Array; inputIds: Int32Array } = { id: 0, inputStart, inputIds };
  // Every node's cells, one after the other.
  const table: (T | undefined)[] = new Array(first[plan.loss + 1]);
  const isWrt = new Uint8Array(plan.loss + 1);
  for (const id of plan.wrt) if (id <= plan.loss) isWrt[id] = 1;
  const grads = new Map<number, T>();
  for (let id = plan.loss; id >= 0; id--) {
    if (needsGrad[id] === 0) continue;
    const g = id === plan.loss ? seed : sumCells(ops, table, first[id]!, first[id + 1]!, hooks);
    if (id === plan.loss) hooks.held?.(g, 1);
    if (isWrt[id] === 1) grads.set(id, g);
    const base = slotBase[id]!;
    const needs = edgesNeedingGrad(cell, base, slotBase[id + 1]! - base);
    if (needs !== null) {
      at.id = id;
      const contributions = runVjp(ops, read(id), g, needs, hooks, defs[id], at);
      for (let s = 0; s < contributions.length; s++) {
        const value = contributions[s];
        if (value === null || value === undefined) continue;
        hooks.held?.(value, 1);
        table[first[inputIds[base + s]!]! + cell[base + s]!] = value;
      }
      hooks.visited?.(id);
    }
    hooks.held?.(g, -1);
  }
  return grads;
}

/** Cells `from` to `to` summed left to right (the canonical order), then emptied. */
export function sumCells<T>(
  ops: Ops<T>,
  cells: (T | undefined)[],
  from = 0,
  to = cells.length,
  hooks: Pick<SweepHooks<T>, 'held'> = {},
): T {
  let g = cells[from] as T;
  cells[from] = undefined;
  for (let k = from + 1; k < to; k++) {
    const c = cells[k] as T;
    cells[k] = undefined;
    const sum = ops.add(g, c);
    if (hooks.held !== undefined) {
      hooks.held(sum, 1);
      hooks.held(g, -1);
      hooks.held(c, -1);
    }
    g = sum;
  }
  return g;
}

// VJPs read `needs` and never write it: the patterns of one and two inputs are shared arrays.
const NEEDS: readonly (readonly boolean[])[][] = [
  [],
  [[false], [true]],
  [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ],
];

/** Which input slots of a node take a gradient contribution (those with a cell); null when none. */
function edgesNeedingGrad(cell: Int32Array, base: number, arity: number): readonly boolean[] | null {
  if (arity <= 2) {
    const mask = (arity > 0 && cell[base]! >= 0 ? 1 : 0) | (arity > 1 && cell[base + 1]! >= 0 ? 2 : 0);
    return mask === 0 ? null : NEEDS[arity]![mask]!;
  }
  const needs = Array.from({ length: arity }, (_, s) => cell[base + s]! >= 0);
  return needs.includes(true) ? needs : null;
}
