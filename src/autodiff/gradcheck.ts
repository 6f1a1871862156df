import { GradientError } from '../errors.ts';
import { GraphBuilder } from '../graph/builder.ts';
import { castGraph, castTensors } from '../graph/cast.ts';
import { type Graph, label, type Node, type NodeRef } from '../graph/graph.ts';
import type { RunContext } from '../ops/op.ts';
import { Rng } from '../tensor/rng.ts';
import { cast, type Tensor } from '../tensor/tensor.ts';
import { own } from '../util/names.ts';
import { evaluate, TRAINING_RUN, valueAndGrad } from './engine.ts';
import type { TensorMap } from './forward.ts';

/** What `gradcheck` checks and how closely. */
export interface GradcheckOptions {
  /** The output to differentiate (a non-scalar one is projected to a scalar). */
  loss: NodeRef;
  /** Default: every parameter. Inputs may be named too. */
  wrt?: readonly NodeRef[];
  /** The inputs' values (cast to float64). */
  feeds?: TensorMap;
  /** The parameters' values (cast to float64). */
  params?: TensorMap;
  /** Central-difference step (default 1e-6). */
  eps?: number;
  /**
   * Absolute tolerance (default 1e-5): an element passes when |analytic - numeric| <= atol + rtol
   * |numeric|.
   */
  atol?: number;
  /** Relative tolerance (default 1e-4). */
  rtol?: number;
  /** Seeds the random projection of a non-scalar output (default 7). */
  seed?: number;
  /**
   * The run both sides compute in (Note [run context] in src/ops/step-key.ts): default a training
   * step, so dropout checks with the mask that step draws.
   */
  run?: RunContext;
}

/** One element whose analytic gradient and central difference disagree. */
export interface GradcheckFailure {
  /** The node checked. */
  wrt: string;
  /** The element, as a flat row-major index. */
  index: number;
  /** The gradient backpropagation gave. */
  analytic: number;
  /** The central difference. */
  numeric: number;
}

/** `gradcheck`'s verdict. */
export interface GradcheckReport {
  /** Every checked element passed. */
  ok: boolean;
  /** Largest |analytic - numeric| over all checked elements. */
  maxAbsError: number;
  /** The number of elements checked. */
  checked: number;
  /** The elements that failed. */
  failures: GradcheckFailure[];
}

/**
 * Checks a graph's gradients against central differences, in float64 whatever the graph's dtype:
 * d/dx_i f ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps). A non-scalar output f is projected to a
 * scalar sum(f * r) with a fixed random r, which checks every element's gradient at once.
 */
export function gradcheck(graph: Graph, options: GradcheckOptions): GradcheckReport {
  const g64 = castGraph(graph, 'float64');
  const lossId = graph.node(options.loss).id;
  const wrt = (options.wrt ?? graph.params()).map((r) => g64.nodes[graph.node(r).id]!);
  const feeds = castTensors(options.feeds ?? {}, 'float64');
  const params = castTensors(options.params ?? {}, 'float64');
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-5;
  const rtol = options.rtol ?? 1e-4;

  // The scalar objective: the loss itself, or sum(loss * r).
  const b = GraphBuilder.from(g64);
  const out = g64.nodes[lossId]!;
  let objective: Node = out;
  if (out.shape.length > 0) {
    const shape = out.shape.map((d) => (typeof d === 'number' ? d : Number.NaN));
    if (shape.some(Number.isNaN))
      throw new GradientError('gradcheck: a non-scalar output needs concrete shapes');
    const r = new Rng(options.seed ?? 7).uniformTensor(shape, -1, 1, 'float64');
    objective = b.sum(b.mul(out, b.const(r)));
  }
  b.output('gradcheck:objective', objective);
  const graph2 = b.build();
  const run = options.run ?? TRAINING_RUN;
  const { grads } = valueAndGrad(graph2, { loss: 'gradcheck:objective', wrt, onWarning: () => {} })(
    feeds,
    params,
    { run },
  );
  const f = (fd: TensorMap, pm: TensorMap) =>
    evaluate(graph2, fd, pm, ['gradcheck:objective'], run)['gradcheck:objective']!.item();

  const failures: GradcheckFailure[] = [];
  let maxAbsError = 0;
  let checked = 0;
  for (const node of wrt) {
    const name = label(node);
    const isParam = node.op === 'param';
    const source = isParam ? params : feeds;
    const base = own(source, node.name!);
    if (base === undefined) throw new GradientError(`gradcheck: no value for ${name}`, { node: name });
    const analytic = grads[name]!;
    for (let i = 0; i < base.size; i++) {
      const at = (delta: number) => {
        const moved = perturbed(base, i, delta);
        const next = { ...source, [node.name!]: moved };
        return isParam ? f(feeds, next) : f(next, params);
      };
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      const a = analytic.data[i]!;
      const err = Math.abs(a - numeric);
      if (!(err <= atol + rtol * Math.abs(numeric)))
        failures.push({ wrt: name, index: i, analytic: a, numeric });
      if (err > maxAbsError || Number.isNaN(err)) maxAbsError = err;
      checked++;
    }
  }
  return { ok: failures.length === 0, maxAbsError, checked, failures };
}

function perturbed(t: Tensor, i: number, delta: number): Tensor {
  const copy = cast(t);
  copy.data[i] = copy.data[i]! + delta;
  return copy;
}

/**
 * gradcheck for a function of tensors: `fn(builder, ...xs)` builds the output from one parameter per
 * given tensor (named x0, x1, ...); every one of them is checked.
 */
export function gradcheckFn(
  fn: (b: GraphBuilder, ...xs: Node[]) => Node,
  inputs: readonly Tensor[],
  options: Omit<GradcheckOptions, 'loss' | 'wrt' | 'params'> & { wrt?: readonly number[] } = {},
): GradcheckReport {
  const b = new GraphBuilder();
  const xs = inputs.map((t, i) => b.param(`x${i}`, t.shape, { dtype: t.dtype }));
  b.output('out', fn(b, ...xs));
  const params = Object.fromEntries(inputs.map((t, i) => [`x${i}`, t]));
  const wrt = (options.wrt ?? inputs.map((_, i) => i)).map((i) => `x${i}`);
  return gradcheck(b.build(), { ...options, loss: 'out', wrt, params });
}
