import type { Shape } from '../tensor/shape.ts';
import type { Node } from './graph.ts';

// Note [graph columns]
// The passes over a whole graph (the forward mask, the gradient plan, the cell layout, the forward
// itself and the reverse sweep) mostly need each node's inputs, and a node's inputs are an array
// behind a node object: on a million-node graph every pass chased two million pointers, spread over
// the heap by the collector. The columns hold the same topology in typed arrays, read in order:
// node id's inputs are `inputIds[inputStart[id]]` to `inputIds[inputStart[id + 1] - 1]`, in slot
// order, so the edge (consumer c, slot s) is `inputStart[c] + s` (the gradient plan's `slotBase`).
// A graph makes them on first use, in one pass; it is immutable, so they never go stale.

/** A graph's topology and types as columns indexed by node id (Note [graph columns]). */
export interface GraphColumns {
  /** Where each node's inputs start in `inputIds`; n + 1 entries, node id's end at `inputStart[id + 1]`. */
  readonly inputStart: Int32Array;
  /** Every node's input ids, node after node, each node's in slot order. */
  readonly inputIds: Int32Array;
  /** Each node's kind: an op (`OP`), or the leaf `INPUT`, `PARAM` or `CONST`. */
  readonly kinds: Uint8Array;
  /** Each node's shape (the node's own array): a VJP's input shapes, without a visit to each input node. */
  readonly shapes: readonly Shape[];
}

/** Kinds of nodes in `GraphColumns.kinds`. */
export const OP = 0;
export const INPUT = 1;
export const PARAM = 2;
export const CONST = 3;

/** The kind of a node of op `op` in `GraphColumns.kinds`. */
export function kindOf(op: string): number {
  return op === 'input' ? INPUT : op === 'param' ? PARAM : op === 'const' ? CONST : OP;
}

/** The columns of a graph's nodes, in one pass, each column allocated once at its size. */
export function columnsOf(nodes: readonly Node[]): GraphColumns {
  const n = nodes.length;
  const inputStart = new Int32Array(n + 1);
  const kinds = new Uint8Array(n);
  // Sized at once: pushing a million entries, growing the array as it goes, costs several times more.
  const shapes = new Array<Shape>(n);
  let edges = 0;
  for (let id = 0; id < n; id++) {
    const node = nodes[id]!;
    edges += node.inputs.length;
    inputStart[id + 1] = edges;
    kinds[id] = kindOf(node.op);
    shapes[id] = node.shape;
  }
  const inputIds = new Int32Array(edges);
  for (let id = 0; id < n; id++) {
    const ins = nodes[id]!.inputs;
    const base = inputStart[id]!;
    for (let k = 0; k < ins.length; k++) inputIds[base + k] = ins[k]!;
  }
  return { inputStart, inputIds, kinds, shapes };
}
