import { GraphError } from '../errors.ts';
import type { Attrs, OpDef } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import type { Shape } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';
import { columnsOf, type GraphColumns, INPUT, PARAM } from './columns.ts';

/**
 * One node of the IR: single assignment, `inputs` are ids of earlier nodes. Leaves are the ops
 * 'input' (fed each step), 'param' (trainable, attrs.init) and 'const' (attrs.value, a Tensor).
 */
export interface Node {
  /** Its index in the graph's `nodes`. */
  readonly id: number;
  /** The op's name, or 'input', 'param' or 'const' for a leaf. */
  readonly op: string;
  /** The ids of the nodes it reads, in slot order (all earlier nodes). */
  readonly inputs: readonly number[];
  /** The op's attributes (a leaf's too: a param's `init`, a const's `value`). */
  readonly attrs: Attrs;
  /** Its output shape (dimensions may be symbolic names). */
  readonly shape: Shape;
  /** Its output dtype. */
  readonly dtype: DType;
  /** Its name, if it has one: an input's or a parameter's, or one given with `GraphBuilder.name`. */
  readonly name?: string;
  /** A manual placement annotation: the stage (worker) this node should run on. */
  readonly stage?: number;
}

/** A reference to a node: the node itself, its id, or its name. */
export type NodeRef = Node | number | string;

/**
 * A graph: nodes in topological order (ids are indices), and named outputs. Immutable once built;
 * lookups by name and op definitions are indexed on first use.
 */
export class Graph {
  /** Every node, in topological order; a node's id is its index. */
  readonly nodes: readonly Node[];
  /** The named outputs: output name to node id. */
  readonly outputs: Readonly<Record<string, number>>;
  private byName: Map<string, number> | null = null;
  private defTable: readonly (OpDef | undefined)[] | null = null;
  private columnTable: GraphColumns | null = null;

  /** `columns`: the nodes' columns (Note [graph columns]) where the caller has them already (@internal). */
  constructor(
    nodes: readonly Node[],
    outputs: Readonly<Record<string, number>> = {},
    columns?: GraphColumns,
  ) {
    this.nodes = nodes;
    this.outputs = outputs;
    if (columns !== undefined) this.columnTable = columns;
  }

  /** The number of nodes. */
  get size(): number {
    return this.nodes.length;
  }

  /** The node a reference names: an id, a node name, an output name, or a node of this graph. */
  node(ref: NodeRef): Node {
    if (typeof ref === 'number') {
      const n = this.nodes[ref];
      if (n === undefined)
        throw new GraphError(`no node %${ref} (the graph has ${this.nodes.length} nodes)`, { node: ref });
      return n;
    }
    if (typeof ref === 'string') {
      const id = this.names().get(ref) ?? (Object.hasOwn(this.outputs, ref) ? this.outputs[ref] : undefined);
      if (id === undefined)
        throw new GraphError(`no node or output named '${ref}'`, { node: ref, expected: 'a node name' });
      return this.nodes[id]!;
    }
    if (this.nodes[ref.id] !== ref)
      throw new GraphError(`node %${ref.id} is not a node of this graph`, { node: ref.id });
    return ref;
  }

  /** Node names to ids (built on first use). */
  names(): Map<string, number> {
    if (this.byName === null) {
      this.byName = new Map();
      for (const n of this.nodes) if (n.name !== undefined) this.byName.set(n.name, n.id);
    }
    return this.byName;
  }

  /**
   * The op definition of every node, by id (undefined for leaves), looked up on first use: engines
   * read it per node, and a registry lookup per node and pass is measurable on graphs of a million
   * nodes. The graph is immutable, so the table never goes stale.
   */
  get defs(): readonly (OpDef | undefined)[] {
    if (this.defTable === null) {
      const nodes = this.nodes;
      const table = new Array<OpDef | undefined>(nodes.length);
      for (let id = 0; id < nodes.length; id++) {
        const node = nodes[id]!;
        table[id] = isLeaf(node) ? undefined : getOp(node.op);
      }
      this.defTable = table;
    }
    return this.defTable;
  }

  /**
   * The topology and node kinds as typed-array columns (Note [graph columns]), made on first use.
   * @internal
   */
  get columns(): GraphColumns {
    this.columnTable ??= columnsOf(this.nodes);
    return this.columnTable;
  }

  /** The input nodes, in id order. */
  inputs(): Node[] {
    return this.leaves(INPUT);
  }

  /** The parameter nodes, in id order. */
  params(): Node[] {
    return this.leaves(PARAM);
  }

  private leaves(kind: number): Node[] {
    const kinds = this.columns.kinds;
    const out: Node[] = [];
    for (let id = 0; id < kinds.length; id++) if (kinds[id] === kind) out.push(this.nodes[id]!);
    return out;
  }
}

/**
 * A graph whose node names its maker already has by id (the builder's), so that `names` need not
 * visit every node: `names` must be exactly what `Graph.names` would make, in id order.
 */
export function namedGraph(
  nodes: readonly Node[],
  outputs: Readonly<Record<string, number>>,
  names: Map<string, number>,
): Graph {
  const graph = new Graph(nodes, outputs);
  (graph as unknown as { byName: Map<string, number> }).byName = names;
  return graph;
}

export function isLeaf(node: Node): boolean {
  return node.op === 'input' || node.op === 'param' || node.op === 'const';
}

/** The printable name of a node: its name, or %id. */
export function label(node: Node): string {
  return node.name ?? `%${node.id}`;
}
