import { cast as castTensor, type DType, type Tensor } from '../tensor/tensor.ts';
import { GraphBuilder } from './builder.ts';
import type { Graph, Node } from './graph.ts';

/** The same graph computing in another dtype (gradcheck runs every graph in float64). */
export function castGraph(graph: Graph, dtype: DType): Graph {
  const b = new GraphBuilder();
  const map: Node[] = [];
  for (const node of graph.nodes) {
    let copy: Node;
    if (node.op === 'input') copy = b.input(node.name!, node.shape, dtype);
    else if (node.op === 'param')
      copy = b.param(node.name!, node.shape as number[], { init: node.attrs.init as never, dtype });
    else if (node.op === 'const') copy = b.const(castTensor(node.attrs.value as Tensor, dtype), node.name);
    else {
      const attrs = 'dtype' in node.attrs ? { ...node.attrs, dtype } : node.attrs;
      copy = b.apply(
        node.op,
        node.inputs.map((i) => map[i]!),
        attrs,
      );
      if (node.name !== undefined) copy = b.name(copy, node.name);
    }
    map.push(copy);
  }
  for (const [name, id] of Object.entries(graph.outputs)) b.output(name, map[id]!);
  return b.build();
}

export function castTensors(values: Readonly<Record<string, Tensor>>, dtype: DType): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, castTensor(v, dtype)]));
}
