import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { GraphError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { columnsOf } from '../../src/graph/columns.ts';
import { laneGraph } from '../../src/graph/generators.ts';
import { Graph, type Node } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { printGraph } from '../../src/graph/print.ts';
import { compile } from '../../src/partition/plan.ts';
import { planColumns, planFromColumns } from '../../src/partition/plan-columns.ts';
import { packGraph, unpackGraph } from '../../src/protocol/packed-graph.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { thrown } from '../support/errors.ts';

// The builder records nodes as columns and hands out handles it does not keep; a built graph makes
// node objects only when they are read (Note [builder columns], src/graph/store.ts). These tests hold
// it to what a graph of plain node objects does.

/** A graph of `levels` elementwise levels over a [3] parameter, with a named node and a staged one. */
function chain(b: GraphBuilder, levels: number): Node {
  let a = b.param('w', [3], { init: { kind: 'uniform', low: -1, high: 1 } });
  const x = b.input('x', [3]);
  for (let i = 0; i < levels; i++) {
    const t = b.tanh(a);
    a = i % 97 === 5 ? b.name(b.add(b.mul(t, x), a), `level${i}`) : b.add(b.mul(t, x), a);
  }
  return b.output('loss', b.sum(b.onStage(1, () => b.mul(a, 0.5))));
}

/** The same graph as node objects in a table, made from what the built graph says of each node. */
function asTable(graph: Graph): Graph {
  const nodes = graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs] }));
  return new Graph(nodes, graph.outputs);
}

describe('GraphBuilder columns', () => {
  it('a graph past the columns growth is the graph of its node objects: printed, columns, values and gradients', () => {
    const b = new GraphBuilder();
    chain(b, 3000);
    const graph = b.build();
    expect(graph.size).toBeGreaterThan(9000);
    const table = asTable(graph);
    expect(printGraph(graph)).toBe(printGraph(table));
    const cols = graph.columns;
    const expected = columnsOf(table.nodes);
    expect([...cols.inputStart]).toEqual([...expected.inputStart]);
    expect([...cols.inputIds]).toEqual([...expected.inputIds]);
    expect([...cols.kinds]).toEqual([...expected.kinds]);
    expect(cols.shapes).toEqual(expected.shapes);
    const params = initParams(graph, 3);
    const feeds = { x: new Rng(4).uniformTensor([3], -1, 1, 'float32') };
    const got = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
    const want = valueAndGrad(table, { loss: 'loss' })(feeds, params);
    expect(got.value.data).toEqual(want.value.data);
    expect(got.grads['w']!.data).toEqual(want.grads['w']!.data);
  });

  it('the engines read the columns: evaluate and valueAndGrad make only the leaves and the loss', () => {
    const b = new GraphBuilder();
    chain(b, 500);
    const graph = b.build();
    const made = () => (graph as unknown as { made: Map<number, Node> | null }).made;
    valueAndGrad(graph, { loss: 'loss' })(
      { x: new Rng(1).uniformTensor([3], -1, 1, 'float32') },
      initParams(graph),
    );
    const ids = [...made()!.keys()].sort((x, y) => x - y);
    expect(ids.map((id) => graph.opOf(id))).toEqual(['param', 'input', 'const', 'sum']);
  });

  it('gradGraph makes its primal handles for the sweep alone: the graph keeps node objects of the leaves and the loss only', () => {
    const b = new GraphBuilder();
    chain(b, 500);
    const graph = b.build();
    const made = () => (graph as unknown as { made: Map<number, Node> | null }).made;
    const grads = gradGraph(graph, { loss: 'loss' });
    const ids = [...made()!.keys()].sort((x, y) => x - y);
    expect(ids.map((id) => graph.opOf(id))).toEqual(['param', 'sum']);
    // The same gradients, bit for bit, as the engine that computes them.
    const feeds = { x: new Rng(1).uniformTensor([3], -1, 1, 'float32') };
    const params = initParams(graph);
    const want = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
    expect(evaluate(grads, feeds, params)['grad:w']!.data).toEqual(want.grads['w']!.data);
  });

  it("a runtime's compile and packing read the columns: they make node objects for the parameters and the loss only", () => {
    const graph = laneGraph(20, 30);
    const plan = compile(graph, { workers: 2, placement: 'per-node' });
    const packed = unpackGraph(packGraph(graph));
    expect(packed.size).toBe(graph.size);
    expect(planFromColumns(packed, planColumns(plan)).placement).toEqual(plan.placement);
    const made = (graph as unknown as { made: Map<number, Node> | (Node | undefined)[] }).made;
    const ids =
      made instanceof Map ? [...made.keys()] : made.flatMap((n, id) => (n === undefined ? [] : [id]));
    expect(ids.length).toBeGreaterThan(0);
    const loss = graph.outputs['loss']!;
    expect(ids).toContain(loss);
    expect(new Set(ids.filter((id) => id !== loss).map((id) => graph.opOf(id)))).toEqual(new Set(['param']));
  });

  it('a handle from the builder is a node of the graph; a handle of another builder, or past the graph, is not', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2]);
    const y = b.relu(x);
    const before = b.build();
    const z = b.neg(y);
    const after = b.build();
    expect(before.node(y)).toBe(y);
    expect(after.node(z)).toBe(z);
    expect(
      evaluate(after, { x: new Rng(2).uniformTensor([2], -1, 1, 'float32') }, {}, [z])['%2']!.shape,
    ).toEqual([2]);
    expect(thrown(GraphError, () => before.node(z)).message).toBe('node %2 is not a node of this graph');
    // Same id, op and shape, another builder: refused by the graph and by the builder.
    const other = new GraphBuilder();
    const x2 = other.input('x', [2]);
    const y2 = other.relu(x2);
    expect(thrown(GraphError, () => after.node(y2)).message).toBe('node %1 is not a node of this graph');
    expect(thrown(GraphError, () => b.neg(y2)).message).toMatch(
      /input 0 \(%1\) is not a node of this builder/,
    );
  });

  it('recording after a build leaves the graph built before as it was, names included', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2]);
    const h = b.relu(x);
    b.output('h', h);
    const first = b.build();
    const printed = printGraph(first);
    const renamed = b.name(h, 'hidden');
    b.output('out', b.mul(renamed, b.exp(h)));
    const second = b.build();
    expect(printGraph(first)).toBe(printed);
    expect(first.size).toBe(2);
    expect(first.nodeAt(1).name).toBeUndefined();
    expect(second.node('hidden').id).toBe(1);
    expect(() => first.node('hidden')).toThrow(GraphError);
    // The handle from before the rename is still the builder's node.
    expect(b.node('hidden').id).toBe(h.id);
    expect(second.node(h).id).toBe(1);
    expect(second.size).toBe(4);
  });

  it('a builder from a graph continues it: the graph nodes are its nodes, and the new graph keeps them', () => {
    const b = new GraphBuilder();
    chain(b, 10);
    const graph = b.build();
    const nodes = graph.nodes;
    const c = GraphBuilder.from(graph);
    expect(c.node(3)).toBe(nodes[3]);
    const extra = c.output('twice', c.mul(nodes[graph.outputs['loss']!]!, 2));
    const longer = c.build();
    expect(longer.nodes[3]).toBe(nodes[3]);
    expect(longer.node(nodes[5]!)).toBe(nodes[5]);
    expect(longer.node(extra)).toBe(extra);
    expect(printGraph(longer).startsWith(printGraph(graph).split('\noutputs')[0]!)).toBe(true);
  });

  it("a builder from a builder's graph copies its columns whole: the same graph as one continued node by node", () => {
    const b = new GraphBuilder();
    chain(b, 3000);
    const graph = b.build();
    // The first builder goes on recording, renames included: the graph, and a builder from it, are not touched.
    b.name(graph.node('level5'), 'renamed');
    b.output(
      'more',
      b.onStage(2, () => b.exp(b.node('x'))),
    );
    const continued = (g: Graph) => {
      const c = GraphBuilder.from(g);
      const twice = c.onStage(0, () => c.mul(c.node('level102'), c.node('x')));
      c.output('twice', c.name(twice, 'twice'));
      return c.build();
    };
    expect(graph.continuing()).not.toBeNull();
    const table = asTable(graph);
    expect(table.continuing()).toBeNull();
    const bulk = continued(graph);
    const byNode = continued(table);
    expect(bulk.size).toBe(graph.size + 1);
    // What the columns say of each node, read before any node object of the new graph is made.
    const read = (g: Graph, f: (id: number) => unknown) => Array.from({ length: g.size }, (_, id) => f(id));
    for (const of of ['opOf', 'dtypeOf', 'attrsOf', 'nameOf', 'stageOf'] as const)
      expect(read(bulk, (id) => bulk[of](id))).toEqual(read(byNode, (id) => byNode[of](id)));
    expect(bulk.stageOf(bulk.size - 1)).toBe(0);
    expect(bulk.stageOf(graph.outputs['loss']! - 1)).toBe(1);
    expect(printGraph(bulk)).toBe(printGraph(byNode));
    const [cols, expected] = [bulk.columns, byNode.columns];
    expect([...cols.inputStart]).toEqual([...expected.inputStart]);
    expect([...cols.inputIds]).toEqual([...expected.inputIds]);
    expect([...cols.kinds]).toEqual([...expected.kinds]);
    expect(cols.shapes).toEqual(expected.shapes);
    expect(bulk.node('level5').id).toBe(graph.node('level5').id);
    expect(() => bulk.node('renamed')).toThrow(GraphError);
    // gradGraph continues the graph so: its gradients evaluate to valueAndGrad's, bit for bit.
    const params = initParams(graph, 3);
    const feeds = { x: new Rng(4).uniformTensor([3], -1, 1, 'float32') };
    const grads = evaluate(gradGraph(graph, { loss: 'loss' }), feeds, params);
    expect(grads['grad:w']!.data).toEqual(
      valueAndGrad(table, { loss: 'loss' })(feeds, params).grads['w']!.data,
    );
  });
});
