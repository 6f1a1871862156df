import { fmtShape, GradientError } from '../errors.ts';
import { GraphBuilder } from '../graph/builder.ts';
import { type Graph, label, type Node, type NodeRef } from '../graph/graph.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { sweep } from './backprop.ts';
import { evaluate } from './engine.ts';
import type { TensorMap } from './forward.ts';
import { planGradient, warnDisconnected } from './plan.ts';

/** What `gradGraph` (and `hvp`) differentiate, and how the gradient outputs are named. */
export interface GradGraphOptions {
  /** The scalar to differentiate (a non-scalar one needs `seed`). */
  loss: NodeRef;
  /** Default: every parameter. */
  wrt?: readonly NodeRef[];
  /** A non-scalar loss needs a seed: 'input' adds an input `seed:<loss>` of the loss's shape. */
  seed?: 'input';
  /** Output names of the gradients: `<prefix><name>` (default 'grad:'). */
  prefix?: string;
  /** Where warnings go (a parameter not connected to the loss); default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

/**
 * Symbol-to-symbol differentiation: returns G+B, the graph with, appended, one gradient node per
 * needed node of G and one contribution per edge. It is an ordinary graph: evaluate it, print it,
 * serialize it, or differentiate it again. Its outputs are G's, the loss, and `grad:<name>` per wrt.
 * Evaluated, it gives valueAndGrad's gradients bit for bit: both run the same `sweep` and VJPs.
 */
export function gradGraph(graph: Graph, options: GradGraphOptions): Graph {
  const wrt = options.wrt ?? graph.params();
  const plan = planGradient(graph, options.loss, wrt);
  const prefix = options.prefix ?? 'grad:';
  warnDisconnected(graph, plan, options.onWarning);
  const b = GraphBuilder.from(graph);
  const lossNode = graph.nodeAt(plan.loss);
  let seed: Node;
  if (lossNode.shape.length === 0) seed = b.constant(1, lossNode.dtype);
  else if (options.seed === 'input')
    seed = b.input(`seed:${label(lossNode)}`, lossNode.shape, lossNode.dtype);
  else {
    throw new GradientError(
      `loss ${label(lossNode)} has shape ${fmtShape(lossNode.shape)}: a non-scalar output needs a seed (gradGraph option seed: 'input')`,
      { node: label(lossNode), found: lossNode.shape },
    );
  }
  const { shapes } = graph.columns;
  const grads = sweep(graph, plan, b, seed, {
    // Handles the builder makes for the sweep alone: the graph itself makes no node object for them.
    primal: (id) => b.handle(id),
    shape: (id) => shapes[id]!,
  });
  if (!Object.values(graph.outputs).includes(plan.loss)) b.output(label(lossNode), lossNode);
  for (const id of plan.wrt) {
    const node = graph.nodeAt(id);
    // Not connected to the loss (warned above): a zero gradient.
    const g = grads.get(id) ?? b.broadcastTo(b.constant(0, node.dtype), node.shape);
    b.output(`${prefix}${label(node)}`, g);
  }
  return b.build();
}

/**
 * Hessian-vector products by differentiating twice: H v = d/dw (grad(w) . v). Returns a function of
 * feeds, parameters and the vector (one tensor per wrt, keyed by name).
 */
export function hvp(
  graph: Graph,
  options: { loss: NodeRef; wrt?: readonly NodeRef[] },
): (feeds: TensorMap, params: TensorMap, v: TensorMap) => Record<string, Tensor> {
  const wrt = (options.wrt ?? graph.params()).map((r) => graph.node(r));
  const first = gradGraph(graph, { loss: options.loss, wrt });
  const b = GraphBuilder.from(first);
  let dot: Node | null = null;
  for (const w of wrt) {
    const v = b.input(`v:${label(w)}`, w.shape, w.dtype);
    const term = b.sum(b.mul(b.node(`grad:${label(w)}`), v));
    dot = dot === null ? term : b.add(dot, term);
  }
  if (dot === null) throw new GradientError('hvp: nothing to differentiate with respect to');
  b.output('hvp:dot', dot);
  const second = gradGraph(b.build(), { loss: 'hvp:dot', wrt: wrt.map((w) => w.id), prefix: 'hvp:' });
  const names = wrt.map((w) => `hvp:${label(w)}`);
  return (feeds, params, v) => {
    const vfeeds: Record<string, Tensor> = { ...feeds };
    for (const w of wrt) vfeeds[`v:${label(w)}`] = v[label(w)]!;
    const out = evaluate(second, vfeeds, params, names);
    return Object.fromEntries(wrt.map((w, i) => [label(w), out[names[i]!]!]));
  };
}
