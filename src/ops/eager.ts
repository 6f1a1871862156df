import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { broadcastShapeOf, type Shape, shapesEqual } from '../tensor/shape.ts';
import { type DType, scalar, Tensor } from '../tensor/tensor.ts';
import { checkArity } from './arity.ts';
import { inferType } from './attrs.ts';
import { type Attrs, EVAL_RUN, NO_ATTRS } from './op.ts';
import { Ops } from './ops.ts';
import { getOp } from './registry.ts';
import { type ElementwiseKernel, KERNEL } from './rules.ts';
import './builtins.ts';

/**
 * Ops on tensors, computed at once: the eager side of the ops interface. `eager.add(a, b)` runs the
 * registered op's shape rule (for its errors) and forward, outside any step (evaluation mode: a
 * `stepKey` says so, and dropout with it is the identity).
 */
export class EagerOps extends Ops<Tensor> {
  apply(op: string, inputs: readonly Tensor[], attrs: Attrs = NO_ATTRS): Tensor {
    if (attrs === NO_ATTRS) {
      const kernel = kernelOf(op);
      if (kernel !== null) {
        const out = elementwise(kernel, inputs);
        if (out !== null) return out;
      }
    }
    const def = getOp(op);
    checkArity(def, inputs.length);
    const info = inferType(def, inputs, attrs);
    const out = def.forward(inputs, attrs, EVAL_RUN);
    if (out.dtype !== info.dtype || !shapesEqual(out.shape, info.shape)) {
      throw new ShapeError(
        `${op}: forward returned ${out.dtype}${fmtShape(out.shape)}, its shape rule says ${info.dtype}${fmtShape(info.shape)}`,
        { op, expected: info.shape, found: out.shape },
      );
    }
    return out;
  }
  // The arithmetic VJPs and gradient sums run most, straight to their kernels (Note [eager fast
  // path]): the built-in add, sub, mul, div, neg and square (a name is registered once, so these
  // are theirs) without the name's lookup and the array of operands. A number or anything a check
  // might refuse takes the general path, which says why.
  override add(a: Tensor | number, b: Tensor | number): Tensor {
    return this.binaryKernel('add', a, b);
  }
  override sub(a: Tensor | number, b: Tensor | number): Tensor {
    return this.binaryKernel('sub', a, b);
  }
  override mul(a: Tensor | number, b: Tensor | number): Tensor {
    return this.binaryKernel('mul', a, b);
  }
  override div(a: Tensor | number, b: Tensor | number): Tensor {
    return this.binaryKernel('div', a, b);
  }
  override neg(x: Tensor): Tensor {
    return x instanceof Tensor ? kernels().unary('neg', x) : super.neg(x);
  }
  override square(x: Tensor): Tensor {
    return x instanceof Tensor ? kernels().unary('square', x) : super.square(x);
  }

  private binaryKernel(kind: 'add' | 'sub' | 'mul' | 'div', a: Tensor | number, b: Tensor | number): Tensor {
    if (
      typeof a !== 'number' &&
      typeof b !== 'number' &&
      a.dtype === b.dtype &&
      broadcastShapeOf(a.shape, b.shape) !== null
    )
      return kernels().binary(kind, a, b);
    return this.apply(kind, this.lift(a, b));
  }

  shapeOf(x: Tensor): Shape {
    return x.shape;
  }
  dtypeOf(x: Tensor): DType {
    return x.dtype;
  }
  constant(value: number, dtype: DType): Tensor {
    return scalar(value, dtype);
  }
}

/** Op names to their elementwise kernel (null: none), filled as ops are first applied. */
const kernelsByName = new Map<string, ElementwiseKernel | null>();

/**
 * The elementwise kernel of a registered op, or null. Note: looked up by name in one map, not read
 * from the op's definition: definitions are objects of many shapes, and reading a symbol-keyed
 * property of one is a megamorphic load that cost as much as the map and the registry lookups
 * together. A registration is never undone, so an entry never goes stale; an unknown name throws
 * as `getOp` does.
 */
export function kernelOf(op: string): ElementwiseKernel | null {
  let kernel = kernelsByName.get(op);
  if (kernel === undefined) {
    kernel = (getOp(op) as { [KERNEL]?: ElementwiseKernel })[KERNEL] ?? null;
    kernelsByName.set(op, kernel);
  }
  return kernel;
}

/**
 * A built-in elementwise op's kernel on inputs no check can refuse (Note [eager fast path]); null
 * where one might, for `apply` to check them and say why.
 */
export function elementwise(kernel: ElementwiseKernel, inputs: readonly Tensor[]): Tensor | null {
  if ('unary' in kernel) return inputs.length === 1 ? kernels().unary(kernel.unary, inputs[0]!) : null;
  if (inputs.length !== 2) return null;
  const a = inputs[0]!;
  const b = inputs[1]!;
  if (a.dtype !== b.dtype || broadcastShapeOf(a.shape, b.shape) === null) return null;
  return kernels().binary(kernel.binary, a, b);
}

/** The eager ops, ready to use: `eager.matmul(x, w)`. */
export const eager = new EagerOps();
