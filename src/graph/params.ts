import { type Initializer, initialize } from '../tensor/init.ts';
import { Rng } from '../tensor/rng.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';
import type { Graph } from './graph.ts';

/** Fresh values for every parameter of a graph, from their initializers, in node order (seeded). */
export function initParams(graph: Graph, seed: number | Rng = 0): Record<string, Tensor> {
  const rng = typeof seed === 'number' ? new Rng(seed) : seed;
  const out = dict<Tensor>();
  for (const node of graph.params()) {
    out[node.name!] = initialize(node.attrs.init as Initializer, node.shape as number[], node.dtype, rng);
  }
  return out;
}
