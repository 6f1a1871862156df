import { GradientError } from '../errors.ts';
import { type Graph, label, type Node, type NodeRef } from '../graph/graph.ts';
import type { OpDef } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import { ancestors } from './forward.ts';

/**
 * What a gradient computation needs to know about a graph, computed once:
 * - `forward`: the mask of nodes the loss depends on (only they are computed);
 * - `needsGrad`: the nodes on a differentiable path from some `wrt` to the loss;
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
    if (desc[id] === 1 || forward[id] === 0) continue;
    const node = nodes[id]!;
    if (node.inputs.length === 0) continue;
    const def = getOp(node.op);
    const ins = node.inputs;
    for (let s = 0; s < ins.length; s++) {
      if (desc[ins[s]!] === 1 && edgeCarriesGrad(def, s)) {
        desc[id] = 1;
        break;
      }
    }
  }
  const needsGrad = new Uint8Array(n);
  for (let id = 0; id <= lossNode.id; id++) needsGrad[id] = forward[id]! & desc[id]!;
  const expected = new Int32Array(n);
  for (let id = lossNode.id; id >= 0; id--) {
    if (needsGrad[id] === 0) continue;
    const node = nodes[id]!;
    if (node.inputs.length === 0) continue;
    const def = getOp(node.op);
    node.inputs.forEach((input, s) => {
      if (needsGrad[input] === 1 && edgeCarriesGrad(def, s)) expected[input]!++;
    });
  }
  const disconnected = wrtIds.filter(
    (id) => needsGrad[id] === 0 || (id !== lossNode.id && expected[id] === 0),
  );
  return { loss: lossNode.id, wrt: wrtIds, forward, needsGrad, expected, disconnected };
}

/** Checks what a gradient is asked of: a wrt leaf must be a float parameter or input. */
export function describeWrt(graph: Graph, ids: readonly number[]): Node[] {
  return ids.map((id) => graph.nodes[id]!);
}
