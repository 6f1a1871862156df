import { GradientError } from '../errors.ts';
import { type Graph, label, type NodeRef } from '../graph/graph.ts';
import type { OpDef } from '../ops/op.ts';
import { ancestors } from './forward.ts';

/**
 * What a gradient computation needs to know about a graph, computed once:
 * - `forward`: the mask of nodes the loss depends on (only they are computed);
 * - `needsGrad`: the nodes on a differentiable path from some `wrt` to the loss (each one but the
 *   loss receives at least one contribution);
 * - `expected[id]`: how many gradient contributions node id receives (one per differentiable edge
 *   to a consumer that needs a gradient). Reverse order is enforced by counting these.
 * - `disconnected`: the `wrt` nodes no differentiable path joins to the loss (zero gradient).
 */
export interface GradPlan {
  readonly loss: number;
  readonly wrt: readonly number[];
  readonly forward: Uint8Array;
  readonly needsGrad: Uint8Array;
  readonly expected: Int32Array;
  readonly disconnected: readonly number[];
}

/** True when a gradient can flow from `consumer` back into its input slot `slot`. */
export function edgeCarriesGrad(def: OpDef, slot: number): boolean {
  return def.vjp !== undefined && !(def.nondiff?.includes(slot) ?? false);
}

export function planGradient(graph: Graph, loss: NodeRef, wrt: readonly NodeRef[]): GradPlan {
  const lossNode = graph.node(loss);
  const wrtIds = wrt.map((r) => graph.node(r).id);
  const seen = new Set<number>();
  for (const id of wrtIds) {
    if (seen.has(id))
      throw new GradientError(`wrt names ${label(graph.nodes[id]!)} twice`, {
        node: label(graph.nodes[id]!),
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
  const nodes = graph.nodes;
  for (let id = low + 1; id <= lossNode.id; id++) {
    const def = defs[id];
    if (desc[id] === 1 || forward[id] === 0 || def === undefined) continue;
    const ins = nodes[id]!.inputs;
    for (let s = 0; s < ins.length; s++) {
      if (desc[ins[s]!] === 1 && edgeCarriesGrad(def, s)) {
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
    const def = defs[id];
    if (asc[id] === 0 || def === undefined) continue;
    const ins = nodes[id]!.inputs;
    for (let s = 0; s < ins.length; s++) if (edgeCarriesGrad(def, s)) asc[ins[s]!] = 1;
  }
  const needsGrad = new Uint8Array(n);
  for (let id = 0; id <= lossNode.id; id++) needsGrad[id] = desc[id]! & asc[id]!;
  const expected = new Int32Array(n);
  for (let id = lossNode.id; id >= 0; id--) {
    const def = defs[id];
    if (needsGrad[id] === 0 || def === undefined) continue;
    const ins = nodes[id]!.inputs;
    for (let s = 0; s < ins.length; s++) {
      if (needsGrad[ins[s]!] === 1 && edgeCarriesGrad(def, s)) expected[ins[s]!]!++;
    }
  }
  const disconnected = wrtIds.filter(
    (id) => needsGrad[id] === 0 || (id !== lossNode.id && expected[id] === 0),
  );
  return { loss: lossNode.id, wrt: wrtIds, forward, needsGrad, expected, disconnected };
}

/** Warns once for each `wrt` node the loss does not depend on (its gradient is zero). */
export function warnDisconnected(graph: Graph, plan: GradPlan, onWarning?: (message: string) => void): void {
  const warn = onWarning ?? ((m: string) => process.emitWarning(m, 'BackflowWarning'));
  for (const id of plan.disconnected) {
    warn(
      `${label(graph.nodes[id]!)} is not connected to the loss ${label(graph.nodes[plan.loss]!)}: its gradient is zero`,
    );
  }
}
