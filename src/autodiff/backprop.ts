import { fmtShape, GradientError, ShapeError } from '../errors.ts';
import { type Graph, label, type Node } from '../graph/graph.ts';
import type { VjpContext } from '../ops/op.ts';
import type { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import { reducedAxes, type Shape, shapesEqual } from '../tensor/shape.ts';
import { edgeCarriesGrad, type GradPlan } from './plan.ts';

/** One gradient contribution waiting in the table: from input slot `slot` of node `consumer`. */
interface Contribution<T> {
  readonly consumer: number;
  readonly slot: number;
  readonly value: T;
}

/** Hooks an engine gives the sweep: where primal values come from, and when they may be freed. */
export interface SweepHooks<T> {
  /** The shape of node id's value (engines that bind symbolic dimensions give the bound shape). */
  shape?(id: number): Shape;
  /** A saved primal value (an input or output the node's op said its backward keeps). */
  primal(id: number): T;
  /** Node id's VJP has run: what it kept may be freed. */
  visited?(id: number): void;
  /** A gradient entering (+1) or leaving (-1) the table, for memory accounting. */
  held?(value: T, sign: 1 | -1): void;
}

// Note [canonical sum order]
// A node's gradient is the sum of one contribution per consumer edge. They are added in a fixed
// order: by consumer id, then by input slot, never in the order they arrived. Floating-point addition
// is not associative, so this order is what makes every engine that follows it (this one, gradGraph,
// and the actor runtime, whatever the timing of its messages) agree bit for bit.

/** Sums contributions in the canonical order. */
export function sumCanonical<T>(ops: Ops<T>, list: Contribution<T>[]): T {
  list.sort((a, b) => a.consumer - b.consumer || a.slot - b.slot);
  let g = list[0]!.value;
  for (let k = 1; k < list.length; k++) g = ops.add(g, list[k]!.value);
  return g;
}

/** Sums a cotangent of a broadcast shape back to the shape of the input it is for. */
export function unbroadcast<T>(ops: Ops<T>, g: T, shape: Shape): T {
  const from = ops.shapeOf(g);
  if (shapesEqual(from, shape)) return g;
  const axes = reducedAxes(from, shape);
  const summed = axes.length > 0 ? ops.sum(g, axes, true) : g;
  return shapesEqual(ops.shapeOf(summed), shape) ? summed : ops.reshape(summed, shape);
}

/**
 * The reverse sweep, written once for every engine (T = Tensor computes, T = Node builds a graph).
 * Nodes are visited in exactly reverse topological order; each needed node's gradient is the
 * canonical sum of its contributions; its VJP sends one contribution along each edge that needs one.
 * Returns the gradient of every `wrt` node connected to the loss.
 */
export function sweep<T>(
  graph: Graph,
  plan: GradPlan,
  ops: Ops<T>,
  seed: T,
  hooks: SweepHooks<T>,
): Map<number, T> {
  const nodes = graph.nodes;
  const { needsGrad } = plan;
  const table: (Contribution<T>[] | undefined)[] = new Array(plan.loss + 1);
  const isWrt = new Set(plan.wrt);
  const grads = new Map<number, T>();
  const shapeOf = hooks.shape ?? ((id: number) => nodes[id]!.shape);
  for (let id = plan.loss; id >= 0; id--) {
    if (needsGrad[id] === 0) continue;
    const node = nodes[id]!;
    let g: T;
    if (id === plan.loss) g = seed;
    else {
      const list = table[id];
      if (list === undefined) continue;
      table[id] = undefined;
      g = sumCanonical(ops, list);
      if (hooks.held) for (const c of list) hooks.held(c.value, -1);
    }
    if (isWrt.has(id)) grads.set(id, g);
    if (node.inputs.length === 0) continue;
    const def = getOp(node.op);
    if (def.vjp === undefined) continue;
    const needs = node.inputs.map((input, s) => needsGrad[input] === 1 && edgeCarriesGrad(def, s));
    if (!needs.includes(true)) continue;
    const ctx = vjpContext(node, g, needs, hooks, shapeOf);
    const cotangents = def.vjp(ops, ctx);
    node.inputs.forEach((input, s) => {
      if (!needs[s]) return;
      const c = cotangents[s];
      if (c === null || c === undefined) {
        expectGradient(node, s);
        return;
      }
      const value = unbroadcastChecked(ops, c, shapeOf(input), node, s);
      hooks.held?.(value, 1);
      let list = table[input];
      if (list === undefined) table[input] = list = [];
      list.push({ consumer: id, slot: s, value });
    });
    hooks.visited?.(id);
  }
  return grads;
}

function vjpContext<T>(
  node: Node,
  g: T,
  needs: boolean[],
  hooks: SweepHooks<T>,
  shapeOf: (id: number) => Shape,
): VjpContext<T> {
  const def = getOp(node.op);
  const s = def.saves;
  return {
    attrs: node.attrs,
    g,
    needs,
    inputShapes: node.inputs.map(shapeOf),
    outputShape: shapeOf(node.id),
    dtype: node.dtype,
    input(i: number): T {
      const saved = s.inputs === 'all' || (s.inputs !== 'none' && s.inputs.includes(i));
      if (!saved) {
        throw new GradientError(
          `${node.op}: its VJP reads input ${i}, which the op does not declare in saves.inputs`,
          {
            op: node.op,
            node: label(node),
            input: i,
          },
        );
      }
      return hooks.primal(node.inputs[i]!);
    },
    output(): T {
      if (!s.output) {
        throw new GradientError(
          `${node.op}: its VJP reads its output, which the op does not declare in saves.output`,
          {
            op: node.op,
            node: label(node),
          },
        );
      }
      return hooks.primal(node.id);
    },
  };
}

function expectGradient(node: Node, slot: number): void {
  throw new GradientError(
    `${node.op} at ${label(node)}: its VJP returned no gradient for input ${slot}, which needs one`,
    {
      op: node.op,
      node: label(node),
      input: slot,
    },
  );
}

function unbroadcastChecked<T>(ops: Ops<T>, c: T, shape: Shape, node: Node, slot: number): T {
  const fail = () =>
    new ShapeError(
      `${node.op} at ${label(node)}: its VJP returned a gradient of shape ${fmtShape(ops.shapeOf(c))} for input ${slot}, expected ${fmtShape(shape)} (or a shape that broadcasts from it)`,
      { op: node.op, node: label(node), input: slot, expected: shape, found: ops.shapeOf(c) },
    );
  const from = ops.shapeOf(c);
  if (from.length < shape.length) throw fail();
  const lead = from.length - shape.length;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] !== 1 && from[lead + i] !== shape[i]) throw fail();
  }
  return unbroadcast(ops, c, shape);
}
