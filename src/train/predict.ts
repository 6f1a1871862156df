import { evaluate } from '../autodiff/engine.ts';
import type { TensorMap } from '../autodiff/forward.ts';
import type { NodeRef } from '../graph/graph.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Model } from './model-file.ts';

/** Options of `predict`. */
export interface PredictOptions {
  /** What to return, by name (default: every output of the graph but the loss). */
  outputs?: readonly NodeRef[];
  /** The loss the default leaves out (default: the output named 'loss'). */
  loss?: NodeRef;
}

/**
 * The forward only, in evaluation mode (dropout is the identity), in this thread with the reference
 * engine: the values of `outputs`, computing only what they need (so the loss's labels need not be
 * fed). On the workers that hold a runtime's parameters, `runtime.infer` gives the same values.
 */
export function predict(
  model: Model,
  feeds: TensorMap,
  options: PredictOptions = {},
): Record<string, Tensor> {
  const { graph, params } = model;
  const lossId =
    options.loss !== undefined || Object.hasOwn(graph.outputs, 'loss')
      ? graph.node(options.loss ?? 'loss').id
      : -1;
  const outputs =
    options.outputs ?? Object.keys(graph.outputs).filter((name) => graph.outputs[name] !== lossId);
  return evaluate(graph, feeds, params, outputs);
}
