import { fmtShape, GradientError, ShapeError } from '../errors.ts';
import { label, type Node } from '../graph/graph.ts';
import { type Attrs, type OpDef, savesInput, type VjpContext } from '../ops/op.ts';
import type { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import { reducedAxes, type Shape, shapesEqual } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';

/** Where a VJP's saved values and shapes come from: the engine running it decides. */
export interface VjpSource<T> {
  /** The value of node id, as saved by the forward. */
  primal(id: number): T;
  /** The shape of node id's value (bound, where the engine binds symbolic dimensions). */
  shape(id: number): Shape;
}

/**
 * Where a node's inputs are in its graph's columns (Note [graph columns]): given to `runVjp` by an
 * engine that has them, so that the VJP does not read the node object and its inputs array.
 */
export interface VjpColumns {
  readonly id: number;
  readonly inputStart: Int32Array;
  readonly inputIds: Int32Array;
}

/**
 * Runs one node's VJP for cotangent `g` and returns, per input slot, the contribution that slot sends
 * back (summed to the input's shape), or null where `needs` says none is wanted. Shared by every
 * engine: the reference sweep, gradGraph and the actors.
 */
export function runVjp<T>(
  ops: Ops<T>,
  node: Node,
  g: T,
  needs: readonly boolean[],
  source: VjpSource<T>,
  def: OpDef = getOp(node.op),
  columns?: VjpColumns,
): (T | null)[] {
  const ids: ArrayLike<number> = columns?.inputIds ?? node.inputs;
  const at = columns === undefined ? 0 : columns.inputStart[columns.id]!;
  const arity = columns === undefined ? node.inputs.length : columns.inputStart[columns.id + 1]! - at;
  const out: (T | null)[] =
    arity === 1 ? [null] : arity === 2 ? [null, null] : new Array<T | null>(arity).fill(null);
  if (def.vjp === undefined) return out;
  // A VJP that runs a VJP of its own (none built in does) gets a context of its own.
  const ctx = (spare as Context<T> | null) ?? new Context<T>();
  spare = null;
  ctx.node = node;
  ctx.def = def;
  ctx.ids = ids;
  ctx.at = at;
  ctx.arity = arity;
  ctx.id = columns === undefined ? node.id : columns.id;
  ctx.g = g;
  ctx.needs = needs;
  ctx.source = source;
  let cotangents: readonly (T | null | undefined)[];
  try {
    cotangents = def.vjp(ops, ctx);
  } finally {
    // Nothing of this call is kept alive by the spare context.
    ctx.g = undefined as T;
    ctx.source = ctx.node = ctx.def = ctx.needs = ctx.ids = undefined as never;
    spare = ctx as Context<unknown>;
  }
  for (let s = 0; s < arity; s++) {
    if (!needs[s]) continue;
    const c = cotangents[s];
    if (c === null || c === undefined) {
      throw new GradientError(
        `${node.op} at ${label(node)}: its VJP returned no gradient for input ${s}, which needs one`,
        {
          op: node.op,
          node: label(node),
          input: s,
        },
      );
    }
    out[s] = unbroadcastChecked(ops, c, source.shape(ids[at + s]!), node, s);
  }
  return out;
}

// Note [vjp context]
// A VJP runs for every node of every backward, and most read two or three fields of its context.
// One context object serves call after call (its fields set for each), with the functions `input`
// and `output` (which VJPs destructure and call without `this`) made once with it: a context and
// two closures per node were a measurable share of a million-node backward's garbage. What costs
// more (the input shapes) is made when a VJP reads it. A VJP must not keep its context past its
// return (none does: it returns its cotangents).

/** The context between two calls, ready for the next (Note [vjp context]). */
let spare: Context<unknown> | null = null;

/** The context of one VJP call (Note [vjp context]). */
class Context<T> implements VjpContext<T> {
  node!: Node;
  def!: OpDef;
  g!: T;
  needs!: readonly boolean[];
  source!: VjpSource<T>;
  /** The node's inputs are `ids[at]` to `ids[at + arity - 1]`; `id` is the node's. */
  ids!: ArrayLike<number>;
  at = 0;
  arity = 0;
  id = 0;
  readonly input = (i: number): T => this.primalInput(i);
  readonly output = (): T => this.primalOutput();

  get attrs(): Attrs {
    return this.node.attrs;
  }

  get dtype(): DType {
    return this.node.dtype;
  }

  get inputShapes(): readonly Shape[] {
    const shapes: Shape[] = [];
    for (let s = 0; s < this.arity; s++) shapes.push(this.source.shape(this.ids[this.at + s]!));
    return shapes;
  }

  get outputShape(): Shape {
    return this.source.shape(this.id);
  }

  private primalInput(i: number): T {
    const { node, def } = this;
    if (!savesInput(def, i)) {
      throw new GradientError(
        `${node.op}: its VJP reads input ${i}, which the op does not declare in saves.inputs`,
        {
          op: node.op,
          node: label(node),
          input: i,
        },
      );
    }
    return this.source.primal(this.ids[this.at + i]!);
  }

  private primalOutput(): T {
    const { node, def } = this;
    if (!def.saves.output) {
      throw new GradientError(
        `${node.op}: its VJP reads its output, which the op does not declare in saves.output`,
        {
          op: node.op,
          node: label(node),
        },
      );
    }
    return this.source.primal(this.id);
  }
}

/** Sums a cotangent of a broadcast shape back to the shape of the input it is for. */
export function unbroadcast<T>(ops: Ops<T>, g: T, shape: Shape): T {
  const from = ops.shapeOf(g);
  if (shapesEqual(from, shape)) return g;
  const axes = reducedAxes(from, shape);
  const summed = axes.length > 0 ? ops.sum(g, axes, true) : g;
  return shapesEqual(ops.shapeOf(summed), shape) ? summed : ops.reshape(summed, shape);
}

function unbroadcastChecked<T>(ops: Ops<T>, c: T, shape: Shape, node: Node, slot: number): T {
  const from = ops.shapeOf(c);
  if (from === shape) return c;
  let ok = from.length >= shape.length;
  const lead = from.length - shape.length;
  for (let i = 0; ok && i < shape.length; i++) ok = shape[i] === 1 || from[lead + i] === shape[i];
  if (!ok) {
    throw new ShapeError(
      `${node.op} at ${label(node)}: its VJP returned a gradient of shape ${fmtShape(from)} for input ${slot}, expected ${fmtShape(shape)} (or a shape that broadcasts to it)`,
      { op: node.op, node: label(node), input: slot, expected: shape, found: from },
    );
  }
  return unbroadcast(ops, c, shape);
}
