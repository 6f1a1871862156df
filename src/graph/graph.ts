import { GraphError } from '../errors.ts';
import type { Attrs, OpDef } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import type { Shape } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';
import { columnsOf, type GraphColumns, INPUT, kindOf, OP, PARAM } from './columns.ts';
import type { NodeStore } from './store.ts';

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
 * Makes a graph's nodes one at a time, for a graph that holds its nodes as columns until they are read
 * (Note [nodes on first read]). Every node it makes must be what the columns say, and making one
 * cannot fail: the columns were checked when the source was made. @internal
 */
export interface NodeSource {
  /** The number of nodes. */
  readonly size: number;
  /** Node `id` (0 <= id < size), a new object on each call: the graph keeps the first. */
  node(id: number): Node;
  /** Node `id`'s op. */
  op(id: number): string;
  /** Node `id`'s dtype. */
  dtype(id: number): DType;
  /** Node `id`'s attributes. */
  attrs(id: number): Attrs;
  /** Node `id`'s name, if it has one. */
  name(id: number): string | undefined;
  /** Node `id`'s stage annotation, if it has one. */
  stage(id: number): number | undefined;
  /** Node names to ids, as `Graph.names` makes them. */
  names(): Map<string, number>;
  /** Every node's op definition (undefined for a leaf), as `Graph.defs` makes them, where the source can do better. */
  defs?(): (OpDef | undefined)[];
  /** Whether `node`, not made by this source, is one of its nodes all the same (Note [builder columns]). */
  owns?(node: Node): boolean;
  /** A builder's columns and names by id, copied whole, to continue `base` (its graph): `GraphBuilder.from`. */
  continuing?(base: Graph): { store: NodeStore; labels: ReadonlyMap<number, string> };
}

// Note [nodes on first read]
// A worker thread gets the graph as columns (Note [packed graph]) and hosts only part of it: on the
// million-node lane graph placed per node over two workers, half the nodes each. Unpacked into a
// node object and an inputs array per node, the whole graph survived in the worker's young
// generation, and copying it there was most of a worker's start (figures: docs/measurements.md). A
// graph made from a NodeSource makes each node when it is first read (`nodeAt`, `node`, the leaves),
// and all of them only when something reads `nodes` itself; what a host reads of every node at its
// start (op, inputs, kinds, shapes) comes from the columns and `opOf`. A node, once made, is the same
// object on every read, so nodes keep their identity (`node(ref)` compares them). A builder's graph
// is made the same way, from the builder's columns (Note [builder columns], src/graph/store.ts).

/**
 * A graph: nodes in topological order (ids are indices), and named outputs. Immutable once built;
 * lookups by name and op definitions are indexed on first use.
 */
export class Graph {
  /** The named outputs: output name to node id. */
  readonly outputs: Readonly<Record<string, number>>;
  /** Every node, once they all exist; null while a source makes them on first read. */
  private table: Node[] | null;
  /**
   * The nodes made so far (Note [nodes on first read]): a map while they are few (a pass that reads
   * only the leaves of a million-node graph need not allocate a slot per node), an array once they
   * are not; and their maker.
   */
  private made: Map<number, Node> | (Node | undefined)[] | null = null;
  private source: NodeSource | null = null;
  /** What says which node objects besides its own are this graph's (Note [builder columns]). */
  private owner: NodeSource | null = null;
  private count: number;
  private byName: Map<string, number> | null = null;
  private defTable: readonly (OpDef | undefined)[] | null = null;
  private columnTable: GraphColumns | null = null;

  /** `columns`: the nodes' columns (Note [graph columns]) where the caller has them already (@internal). */
  constructor(
    nodes: readonly Node[],
    outputs: Readonly<Record<string, number>> = {},
    columns?: GraphColumns,
  ) {
    this.table = nodes as Node[];
    this.count = nodes.length;
    this.outputs = outputs;
    if (columns !== undefined) this.columnTable = columns;
  }

  /** A graph whose nodes `source` makes on first read, with their columns (Note [nodes on first read]). @internal */
  static fromSource(
    source: NodeSource,
    outputs: Readonly<Record<string, number>>,
    columns: GraphColumns,
  ): Graph {
    const graph = new Graph([], outputs, columns);
    graph.table = null;
    graph.made = new Map();
    graph.source = source;
    if (source.owns !== undefined) graph.owner = source;
    graph.count = source.size;
    return graph;
  }

  /**
   * Where this graph stands on a builder's columns: a copy of them, and its names by id, for a builder
   * that continues it (`GraphBuilder.from`); else null. @internal
   */
  continuing(): { store: NodeStore; labels: ReadonlyMap<number, string> } | null {
    return this.owner?.continuing?.(this) ?? null;
  }

  /** Whether every node object is made already (a pass that would make them can read the columns instead). @internal */
  get madeAll(): boolean {
    return this.table !== null;
  }

  /** Every node, in topological order; a node's id is its index. */
  get nodes(): readonly Node[] {
    return this.table ?? this.makeAll();
  }

  private makeAll(): Node[] {
    const made = this.madeArray();
    const source = this.source!;
    for (let id = 0; id < this.count; id++) made[id] ??= source.node(id);
    this.table = made as Node[];
    this.made = null;
    this.source = null;
    return this.table;
  }

  /** The number of nodes. */
  get size(): number {
    return this.count;
  }

  /** Node `id`, for 0 <= id < size (unchecked: `node` checks its reference). */
  nodeAt(id: number): Node {
    const table = this.table;
    if (table !== null) return table[id]!;
    const made = this.made!;
    if (!(made instanceof Map)) return made[id] ?? (made[id] = this.source!.node(id));
    let node = made.get(id);
    if (node === undefined) {
      node = this.source!.node(id);
      made.set(id, node);
      if (made.size > 64 && made.size > this.count >> 5) this.madeArray();
    }
    return node;
  }

  /** The nodes made so far as an array (Note [nodes on first read]). */
  private madeArray(): (Node | undefined)[] {
    const made = this.made!;
    if (!(made instanceof Map)) return made;
    const array = new Array<Node | undefined>(this.count);
    for (const [id, node] of made) array[id] = node;
    this.made = array;
    return array;
  }

  /** Node `id`'s op, for 0 <= id < size, without making the node. */
  opOf(id: number): string {
    const table = this.table;
    return table !== null ? table[id]!.op : this.source!.op(id);
  }

  /** Node `id`'s dtype, for 0 <= id < size, without making the node. */
  dtypeOf(id: number): DType {
    const table = this.table;
    return table !== null ? table[id]!.dtype : this.source!.dtype(id);
  }

  /** Node `id`'s attributes, for 0 <= id < size, without making the node. */
  attrsOf(id: number): Attrs {
    const table = this.table;
    return table !== null ? table[id]!.attrs : this.source!.attrs(id);
  }

  /** Node `id`'s name, for 0 <= id < size, without making the node. */
  nameOf(id: number): string | undefined {
    const table = this.table;
    return table !== null ? table[id]!.name : this.source!.name(id);
  }

  /** Node `id`'s stage annotation, for 0 <= id < size, without making the node. */
  stageOf(id: number): number | undefined {
    const table = this.table;
    return table !== null ? table[id]!.stage : this.source!.stage(id);
  }

  /**
   * A reader of nodes by id for a pass over the graph that does not keep them: where the graph has
   * no table of node objects, one object that reads the columns of the node it was last called for
   * (Note [builder columns]), which the caller must not hold past its next call. @internal
   */
  reader(): (id: number) => Node {
    const table = this.table;
    if (table !== null) return (id) => table[id]!;
    const view = new NodeView(this);
    return (id) => view.at(id);
  }

  /** The node a reference names: an id, a node name, an output name, or a node of this graph. */
  node(ref: NodeRef): Node {
    if (typeof ref === 'number') {
      if (!(Number.isInteger(ref) && ref >= 0 && ref < this.count))
        throw new GraphError(`no node %${ref} (the graph has ${this.count} nodes)`, { node: ref });
      return this.nodeAt(ref);
    }
    if (typeof ref === 'string') {
      const id = this.names().get(ref) ?? (Object.hasOwn(this.outputs, ref) ? this.outputs[ref] : undefined);
      if (id === undefined)
        throw new GraphError(`no node or output named '${ref}'`, { node: ref, expected: 'a node name' });
      return this.nodeAt(id);
    }
    if (!this.owns(ref))
      throw new GraphError(`node %${ref.id} is not a node of this graph`, { node: ref.id });
    return ref;
  }

  /** Whether `ref` is a node of this graph (what `node` checks of a node it is given). @internal */
  owns(ref: Node): boolean {
    if (this.owner?.owns?.(ref) === true) return true;
    return Number.isInteger(ref.id) && ref.id >= 0 && ref.id < this.count && this.nodeAt(ref.id) === ref;
  }

  /** Node names to ids (built on first use). */
  names(): Map<string, number> {
    if (this.byName === null) {
      if (this.source !== null) this.byName = this.source.names();
      else {
        this.byName = new Map();
        for (const n of this.nodes) if (n.name !== undefined) this.byName.set(n.name, n.id);
      }
    }
    return this.byName;
  }

  /**
   * The op definition of every node, by id (undefined for leaves), looked up on first use: engines
   * read it per node, and a registry lookup per node and pass is measurable on graphs of a million
   * nodes. The graph is immutable, so the table never goes stale.
   */
  get defs(): readonly (OpDef | undefined)[] {
    if (this.defTable === null && this.source?.defs !== undefined) this.defTable = this.source.defs();
    if (this.defTable === null) {
      const table = new Array<OpDef | undefined>(this.count);
      for (let id = 0; id < this.count; id++) {
        const op = this.opOf(id);
        table[id] = kindOf(op) === OP ? getOp(op) : undefined;
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
    for (let id = 0; id < kinds.length; id++) if (kinds[id] === kind) out.push(this.nodeAt(id));
    return out;
  }
}

/**
 * One node, read from a graph's columns field by field as it is read, for one node after another
 * (`Graph.reader`).
 */
class NodeView implements Node {
  id = 0;
  private shapes: readonly Shape[] | null = null;

  constructor(private readonly graph: Graph) {}

  at(id: number): Node {
    this.id = id;
    return this;
  }

  get op(): string {
    return this.graph.opOf(this.id);
  }

  get attrs(): Attrs {
    return this.graph.attrsOf(this.id);
  }

  get shape(): Shape {
    this.shapes ??= this.graph.columns.shapes;
    return this.shapes[this.id]!;
  }

  get dtype(): DType {
    return this.graph.dtypeOf(this.id);
  }

  get inputs(): readonly number[] {
    const { inputStart, inputIds } = this.graph.columns;
    const from = inputStart[this.id]!;
    const out = new Array<number>(inputStart[this.id + 1]! - from);
    for (let k = 0; k < out.length; k++) out[k] = inputIds[from + k]!;
    return out;
  }

  get name(): string | undefined {
    return this.graph.nameOf(this.id);
  }

  get stage(): number | undefined {
    return this.graph.stageOf(this.id);
  }
}

export function isLeaf(node: Node): boolean {
  return node.op === 'input' || node.op === 'param' || node.op === 'const';
}

/** The printable name of a node: its name, or %id. */
export function label(node: Node): string {
  return node.name ?? `%${node.id}`;
}
