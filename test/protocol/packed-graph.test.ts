import { describe, expect, it } from 'vitest';
import { Host } from '../../src/actor/host.ts';
import { FormatError, GraphError } from '../../src/errors.ts';
import { columnsOf } from '../../src/graph/columns.ts';
import { laneGraph } from '../../src/graph/generators.ts';
import { Graph, type Node, type NodeSource } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { printGraph } from '../../src/graph/print.ts';
import { compile } from '../../src/partition/plan.ts';
import { planColumns, planFromColumns } from '../../src/partition/plan-columns.ts';
import { type PackedGraph, packGraph, unpackGraph } from '../../src/protocol/packed-graph.ts';
import { sharedColumns } from '../../src/protocol/shared-columns.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';
import { everyFieldGraph } from '../support/models.ts';

/** As a worker receives it: a structured clone. */
const handOver = (g: Graph) => unpackGraph(structuredClone(packGraph(g)));

describe('packed graph (the coordinator -> worker handoff)', () => {
  it('rebuilds the same graph: printed form, outputs, names, stages, attributes, const bits', () => {
    const g = everyFieldGraph();
    const back = handOver(g);
    expect(printGraph(back)).toBe(printGraph(g));
    expect(back.outputs).toEqual(g.outputs);
    expect(back.nodes.map((n) => [n.name, n.stage])).toEqual(g.nodes.map((n) => [n.name, n.stage]));
    expect(back.nodes.map((n) => n.attrs)).toEqual(g.nodes.map((n) => n.attrs));
    expect(back.node('x').shape).toEqual(['B', 6]);
    const bias = back.node('bias').attrs.value as Tensor;
    expectBitwise(bias, g.node('bias').attrs.value as Tensor);
    expect(bias.data.buffer).not.toBe((g.node('bias').attrs.value as Tensor).data.buffer);
    // Same field order as the builder's nodes (one object shape for the hot paths).
    expect(back.nodes.map((n) => Object.keys(n))).toEqual(g.nodes.map((n) => Object.keys(n)));
    // Its columns come with it, the same as made from its nodes (Note [graph columns]).
    expect(back.columns).toEqual(columnsOf(g.nodes));
  });

  it('crosses in shared memory too, the same graph (Note [shared columns])', () => {
    const g = everyFieldGraph();
    const packed = packGraph(g, { shared: true });
    for (const column of [
      packed.op,
      packed.dtype,
      packed.inputStart,
      packed.inputs,
      packed.shapeStart,
      packed.dims,
    ])
      expect(column.buffer).toBeInstanceOf(SharedArrayBuffer);
    // Copied into shared memory afterwards, the same columns.
    expect(sharedColumns(packGraph(g))).toEqual(packed);
    const back = unpackGraph(structuredClone(packed));
    expect(printGraph(back)).toBe(printGraph(g));
    expect(back.nodes.map((n) => [n.name, n.stage, n.attrs])).toEqual(
      g.nodes.map((n) => [n.name, n.stage, n.attrs]),
    );
    expect(Array.from(back.columns.inputIds)).toEqual(Array.from(columnsOf(g.nodes).inputIds));
  });

  it('compiles to the same plan', () => {
    const g = laneGraph(3, 4);
    const options = { workers: 2, placement: 'per-node' as const };
    const [a, b] = [compile(g, options), compile(handOver(g), options)];
    expect(b.placement).toEqual(a.placement);
    expect(b.consumers).toEqual(a.consumers);
    expect(b.grad.expected).toEqual(a.grad.expected);
  });

  it.each<[string, (p: PackedGraph) => PackedGraph]>([
    ['a short column', (p) => ({ ...p, op: p.op.slice(1) })],
    ['an offset past the inputs', (p) => ({ ...p, inputs: p.inputs.slice(1) })],
    ['an input after its consumer', (p) => ({ ...p, inputs: p.inputs.map((i) => i + 1000) })],
    ['an unknown op', (p) => ({ ...p, ops: [] })],
    ['an unknown dtype', (p) => ({ ...p, dtype: p.dtype.map(() => 9) })],
    ['an unknown symbol', (p) => ({ ...p, symbols: [] })],
    ['bad attributes', (p) => ({ ...p, attrs: p.attrs.map(([id]) => [id, 'x'] as const) })],
    ['an output out of range', (p) => ({ ...p, outputs: [['loss', p.size]] })],
    ['no columns at all', () => ({}) as PackedGraph],
    ['no list of names', (p) => ({ ...p, names: undefined }) as unknown as PackedGraph],
  ])('refuses %s with a FormatError', (_, corrupt) => {
    expect(() => unpackGraph(corrupt(packGraph(everyFieldGraph())))).toThrow(FormatError);
  });

  it('makes each node on first read, once (Note [nodes on first read])', () => {
    const g = everyFieldGraph();
    const back = handOver(g);
    // What does not need nodes is read from the columns.
    expect(g.nodes.map((n) => back.opOf(n.id))).toEqual(g.nodes.map((n) => n.op));
    expect(g.nodes.map((n) => back.dtypeOf(n.id))).toEqual(g.nodes.map((n) => n.dtype));
    expect(back.defs).toEqual(g.defs);
    expect([...back.names()]).toEqual([...g.names()]);
    expect(back.size).toBe(g.size);
    // A node made before the whole list is the one in it, and the graph knows it as its own.
    const early = back.nodeAt(3);
    const h1 = back.node('h1');
    expect(back.nodes[3]).toBe(early);
    expect(back.nodes[h1.id]).toBe(h1);
    expect(back.node(early)).toBe(early);
    expect(() => back.node({ ...early })).toThrow(GraphError);
    expect(() => back.node(back.size)).toThrow(GraphError);
    expect(() => back.node(1.5)).toThrow(GraphError);
  });

  it('a host starts without making the nodes of its graph', () => {
    const g = laneGraph(4, 6);
    const plan = compile(g, { workers: 2, placement: 'per-node' });
    const made: number[] = [];
    const source: NodeSource = {
      size: g.size,
      node: (id) => {
        made.push(id);
        return { ...g.nodes[id]! } as Node;
      },
      op: (id) => g.nodes[id]!.op,
      dtype: (id) => g.nodes[id]!.dtype,
      attrs: (id) => g.nodes[id]!.attrs,
      name: (id) => g.nodes[id]!.name,
      stage: (id) => g.nodes[id]!.stage,
      names: () => new Map(g.names()),
    };
    const lazy = Graph.fromSource(source, g.outputs, columnsOf(g.nodes));
    const params = new Map(Object.entries(initParams(g, 1)).map(([name, t]) => [g.node(name).id, t]));
    new Host(planFromColumns(lazy, planColumns(plan)), 0, params);
    // Its parameters (values and books), and a node per kind of actor: not one per node.
    expect(made.length).toBeGreaterThan(0);
    expect(made.length).toBeLessThan(g.size / 4);
    expect(new Set(made).size).toBe(made.length);
  });
});
