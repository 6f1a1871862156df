import type { ValueEngine } from '../actor/engine.ts';
import { resolveAttrs, type Bindings, resolveShape } from '../autodiff/forward.ts';
import { label, type Node } from '../graph/graph.ts';
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
  shared?: boolean;
}

function virtual(shape: readonly number[], dtype: DType): VirtualTensor {
  let n = 1;
  for (const d of shape) n *= d;
  return { shape, dtype, bytes: n * bytesPerElement(dtype) };
}

/** Ops that compute only shapes, through each op's own shape rule. */
export class ShapeOps extends Ops<VirtualTensor> {
  apply(op: string, inputs: readonly VirtualTensor[], attrs: Attrs = {}): VirtualTensor {
    const info = getOp(op).infer(inputs, attrs);
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

/**
 * The host engine of the simulator: the same actor and host logic as a real run, with values that are
 * only shapes. Memory counters still count the bytes real tensors would hold.
 */
export const shapeEngine: ValueEngine<VirtualTensor> = {
  ops: new ShapeOps(),
  forward(node: Node, args: readonly VirtualTensor[], bindings: Bindings): VirtualTensor {
    const attrs = resolveAttrs(node.op, node.attrs, bindings);
    getOp(node.op).infer(args, attrs);
    return virtual(resolveShape(node.shape, bindings, label(node)), node.dtype);
  },
  copy: (t) => virtual(t.shape, t.dtype),
  share: (t) => {
    t.shared = true;
  },
  isShared: (t) => t.shared === true,
  sameStorage: (a, b) => a === b,
  item: () => Number.NaN,
  bytes: (t) => t.bytes,
  zeros: (shape, dtype) => virtual(shape, dtype),
};
