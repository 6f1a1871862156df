// Shared shape rules and op-definition helpers for the built-in ops.
import { DTypeError, fmtShape, ShapeError } from '../errors.ts';
import { type BinaryKind, kernels, type UnaryKind } from '../tensor/kernels.ts';
import { broadcastShapeOf, type Dim, type Shape } from '../tensor/shape.ts';
import type { Attrs, OpDef, Saves, TypeInfo, Vjp } from './op.ts';

/** The number of elements of a shape, symbolic dimensions counted as 1 (for cost estimates). */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= typeof d === 'number' ? d : 1;
  return n;
}

export function sameDType(op: string, inputs: readonly TypeInfo[]): TypeInfo['dtype'] {
  const dtype = inputs[0]!.dtype;
  for (let i = 1; i < inputs.length; i++) {
    if (inputs[i]!.dtype !== dtype) {
      throw new DTypeError(
        `${op}: input ${i} has dtype ${inputs[i]!.dtype}, expected ${dtype} like input 0`,
        {
          op,
          input: i,
          expected: dtype,
          found: inputs[i]!.dtype,
        },
      );
    }
  }
  return dtype;
}

/** The shape with `axes` set to 1 (keepdims) or removed. */
export function reducedShape(shape: Shape, axes: readonly number[], keepdims: boolean): Dim[] {
  const out: Dim[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

// Note [eager fast path]
// An eager op checks its arity and attributes and runs its shape rule before its kernel, for the
// errors they give; the reference engine's backward runs about two eager ops per node, on tensors
// whose checks cannot fail. The built-in elementwise ops made here carry their kernel under the
// symbol KERNEL, and `EagerOps.apply` calls it directly when no check can fail: no attributes, a
// unary op's one input, or a binary op's two inputs of one dtype whose shapes broadcast. What it
// returns is what the op's forward would have returned, the same call of the same kernel.

/** The kernel of a built-in elementwise op (Note [eager fast path]). */
export const KERNEL: unique symbol = Symbol('kernel');

/** What a built-in elementwise op carries under KERNEL. */
export type ElementwiseKernel = { unary: UnaryKind } | { binary: BinaryKind };

/** An elementwise op of one input computed by a unary kernel. */
export function unaryOp<A extends Attrs = Attrs>(spec: {
  name: string;
  kind: UnaryKind;
  /** The kernel's parameter, from an attribute declared in `attrs`. */
  attrs?: OpDef['attrs'];
  param?: (attrs: A) => number;
  saves: Saves;
  vjp?: Vjp<A>;
  flopsPerElement?: number;
}): OpDef<A> {
  return {
    name: spec.name,
    arity: 1,
    saves: spec.saves,
    attrs: spec.attrs ?? {},
    ...(spec.vjp ? { vjp: spec.vjp } : {}),
    infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
    forward: ([x], attrs) => kernels().unary(spec.kind, x!, spec.param?.(attrs)),
    flops: (_, out) => numel(out.shape) * (spec.flopsPerElement ?? 1),
    // Only an op without attributes: its kernel then takes no parameter.
    ...(spec.attrs === undefined && spec.param === undefined ? { [KERNEL]: { unary: spec.kind } } : {}),
  };
}

/** An elementwise op of two inputs with NumPy broadcasting, computed by a binary kernel. */
export function binaryOp(spec: { name: string; kind: BinaryKind; saves: Saves; vjp?: Vjp<Attrs> }): OpDef {
  return {
    name: spec.name,
    arity: 2,
    saves: spec.saves,
    attrs: {},
    ...(spec.vjp ? { vjp: spec.vjp } : {}),
    infer: (inputs) => {
      const a = inputs[0]!.shape;
      const b = inputs[1]!.shape;
      // The common cases, equal shapes or a scalar operand, make no new shape array.
      const shape = broadcastShapeOf(a, b);
      if (shape === null) {
        throw new ShapeError(
          `${spec.name}: input 1 has shape ${fmtShape(b)}, which does not broadcast with input 0 of shape ${fmtShape(a)} ` +
            '(expected each pair of trailing dimensions to be equal or 1)',
          { op: spec.name, input: 1, expected: `a shape that broadcasts with ${fmtShape(a)}`, found: b },
        );
      }
      return { shape, dtype: sameDType(spec.name, inputs) };
    },
    forward: ([a, b]) => kernels().binary(spec.kind, a!, b!),
    flops: (_, out) => numel(out.shape),
    ...{ [KERNEL]: { binary: spec.kind } },
  };
}

/**
 * Axes as reductions store them: normalized into [0, rank), in increasing order, each once (the Ops
 * facade normalizes what it is given; the VJPs read the attribute as stored).
 */
export function checkAxes(op: string, axes: readonly number[], rank: number): void {
  for (let i = 0; i < axes.length; i++) {
    const a = axes[i]!;
    if (a < 0 || a >= rank || (i > 0 && a <= axes[i - 1]!)) {
      throw new ShapeError(`${op}: axes ${fmtShape(axes)} are not distinct increasing axes in [0, ${rank})`, {
        op,
        expected: `distinct increasing axes in [0, ${rank})`,
        found: axes,
      });
    }
  }
}

/** An axis attribute as ops store it: already normalized into [0, rank) (the Ops facade normalizes negative ones). */
export function checkAxis(op: string, axis: number, rank: number): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= rank) {
    throw new ShapeError(`${op}: axis ${axis} is out of range for rank ${rank}`, {
      op,
      expected: `[0, ${rank})`,
      found: axis,
    });
  }
}
