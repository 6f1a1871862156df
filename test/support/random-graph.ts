// Seeded random graphs over the op set, with fan-out and shared sub-expressions, for property tests
// of the engines. Every value has shape [B, 3], so any two can meet in a binary op.
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { Rng } from '../../src/tensor/rng.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';

export const WIDTH = 3;

type Step = (b: GraphBuilder, pick: () => Node, param: () => Node) => Node;

const steps: Step[] = [
  (b, pick) => b.tanh(pick()),
  (b, pick) => b.sigmoid(pick()),
  (b, pick) => b.gelu(pick()),
  (b, pick) => b.relu(pick()),
  (b, pick) => b.mul(b.neg(pick()), 0.5),
  (b, pick) => b.square(b.tanh(pick())),
  (b, pick) => b.add(pick(), pick()),
  (b, pick) => b.sub(pick(), pick()),
  (b, pick) => b.mul(pick(), pick()),
  (b, pick) => b.maximum(pick(), pick()),
  (b, pick, param) => b.matmul(pick(), param()),
  (b, pick, param) => b.matmul(pick(), param(), { transB: true }),
  (b, pick) => b.add(pick(), b.sum(pick(), 1, true)),
  (b, pick) => b.softmax(pick(), 1),
  (b, pick) => b.mul(pick(), b.mean(pick(), 1, true)),
  (b, pick) => b.div(pick(), b.add(b.exp(b.tanh(pick())), 1)),
  (b, pick) => b.slice(b.concat([pick(), pick()], 1), [0, 1], [-1, WIDTH]),
];

export interface RandomGraph {
  graph: Graph;
  params: Record<string, Tensor>;
  feeds: (batch: number, seed: number) => Record<string, Tensor>;
}

/** A random scalar-loss graph of about `size` op nodes, with `paramCount` [3,3] parameters, from a seed. */
export function randomGraph(seed: number, size = 12, paramCount = 3): RandomGraph {
  const rng = new Rng(seed);
  const b = new GraphBuilder();
  const x = b.input('x', ['B', WIDTH]);
  const params = Array.from({ length: paramCount }, (_, i) =>
    b.param(`p${i}`, [WIDTH, WIDTH], { init: { kind: 'normal', std: 0.5 } }),
  );
  const values: Node[] = [x];
  // Recent values are picked more often, so chains get deep; old ones make long skip edges.
  const pick = () =>
    values[values.length - 1 - Math.min(values.length - 1, Math.floor(rng.next() ** 2 * values.length))]!;
  const param = () => params[rng.int(params.length)]!;
  for (let i = 0; i < size; i++) values.push(steps[rng.int(steps.length)]!(b, pick, param));
  // Make every parameter count: each adds a term to the loss through the last value.
  let out = values[values.length - 1]!;
  for (const p of params) out = b.add(out, b.tanh(b.matmul(values[rng.int(values.length)]!, p)));
  b.output('loss', b.mean(b.square(out)));
  const graph = b.build();
  const init: Record<string, Tensor> = {};
  for (const p of params) init[p.name!] = rng.normalTensor([WIDTH, WIDTH], 0, 0.5);
  return {
    graph,
    params: init,
    feeds: (batch, s) => ({ x: new Rng(s).normalTensor([batch, WIDTH]) }),
  };
}
