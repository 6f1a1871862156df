import type { ValueEngine } from '../actor/engine.ts';
import { type Bindings, resolveShape } from '../autodiff/forward.ts';
import { type Graph, label } from '../graph/graph.ts';
import { inferType } from '../ops/attrs.ts';
import type { Attrs } from '../ops/op.ts';
import { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import type { Shape } from '../tensor/shape.ts';
import { bytesPerElement, type DType } from '../tensor/tensor.ts';

/** A value in the simulator: a shape and a dtype, no numbers. */
export interface VirtualTensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly bytes: number;
  shared: boolean;
}

function virtual(shape: readonly number[], dtype: DType): VirtualTensor {
  let n = 1;
  for (const d of shape) n *= d;
  // Every field in the literal: a field added later would cost each value a second allocation.
  return { shape, dtype, bytes: n * bytesPerElement(dtype), shared: false };
}

/** Ops that compute only shapes, through each op's own shape rule. */
export class ShapeOps extends Ops<VirtualTensor> {
  apply(op: string, inputs: readonly VirtualTensor[], attrs: Attrs = {}): VirtualTensor {
    const info = inferType(getOp(op), inputs, attrs);
    const first = inputs[0];
    // Elementwise results have their input's shape (often the very array): no need to count again.
    if (first !== undefined && info.shape === first.shape && info.dtype === first.dtype) {
      return { shape: first.shape, dtype: first.dtype, bytes: first.bytes, shared: false };
    }
    return virtual(info.shape as number[], info.dtype);
  }
  shapeOf(x: VirtualTensor): Shape {
    return x.shape;
  }
  dtypeOf(x: VirtualTensor): DType {
    return x.dtype;
  }
  constant(_value: number, dtype: DType): VirtualTensor {
    return virtual([], dtype);
  }
}

const shapeOps = new ShapeOps();
const NO_BINDINGS: Bindings = new Map();

/**
 * The host engine of the simulator: the same actor and host logic as a real run, with values that are
 * only shapes. Memory counters still count the bytes real tensors would hold.
 *
 * A forward's value is the node's declared shape under the shard's bindings: the graph's shapes were
 * checked when it was built, so the simulator trusts them instead of running the shape rule again
 * (the real engine still checks every forward's result). Likewise a backward's contributions are
 * its inputs' shapes, without running the VJP (Note [contributions without numbers]). The bound
 * shape of each node is cached for the bindings it was bound with; the shards of a step share
 * their bindings objects.
 */
export function shapeEngine(graph: Graph): ValueEngine<VirtualTensor> {
  const nodes = graph.nodes;
  const boundFor: (Bindings | undefined)[] = new Array(graph.size).fill(undefined);
  const bound: (VirtualTensor | undefined)[] = new Array(graph.size).fill(undefined);
  /** A value of node id's shape and dtype under `bindings`. */
  const boundValue = (id: number, bindings: Bindings): VirtualTensor => {
    let t = bound[id];
    if (t === undefined || boundFor[id] !== bindings) {
      const node = nodes[id]!;
      t = virtual(resolveShape(node.shape, bindings, label(node)), node.dtype);
      bound[id] = t;
      boundFor[id] = bindings;
    }
    // A value of its own: whether its storage is shared is a property of this value.
    return { shape: t.shape, dtype: t.dtype, bytes: t.bytes, shared: false };
  };
  return {
    ops: shapeOps,
    forward: (node, _args, bindings) => boundValue(node.id, bindings),
    // Note [contributions without numbers]: each one has its input's shape and dtype.
    contributions(node, needs, bindings) {
      const out = new Array<VirtualTensor | null>(needs.length);
      for (let s = 0; s < needs.length; s++) out[s] = needs[s] ? boundValue(node.inputs[s]!, bindings) : null;
      return out;
    },
    copy: (t) => ({ shape: t.shape, dtype: t.dtype, bytes: t.bytes, shared: false }),
    share: (t) => {
      t.shared = true;
    },
    isShared: (t) => t.shared,
    sameStorage: (a, b) => a === b,
    item: () => Number.NaN,
    bytes: (t) => t.bytes,
    storage: () => null,
    zeros: (shape, dtype) => virtual(shape, dtype),
    constant: (node) => virtual(resolveShape(node.shape, NO_BINDINGS, label(node)), node.dtype),
    sumOfSquares: () => Number.NaN,
  };
}
