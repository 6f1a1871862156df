import { type Attrs, NO_ATTRS, type OpDef } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import type { Shape } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';
import { type GraphColumns, kindOf, OP } from './columns.ts';
import type { Graph, Node, NodeSource } from './graph.ts';

// Note [builder columns]
// A builder keeps what it records as typed-array columns (op, dtype and kind codes, indices into tables
// of the distinct shapes and attribute objects, the inputs), not as a node object and an inputs array
// per node. The node it
// returns from each call is the caller's handle: the builder does not keep it, so the handles a
// caller drops die young, and a million-node graph is a few dozen large arrays instead of two million
// small objects, which the collector copied and marked and a fresh heap paid a page fault for
// (figures: docs/measurements.md). The built graph makes a node object from the columns when one is
// read (Note [nodes on first read]); the engines read the columns and never make them.
//
// A handle is a `StoredNode`, branded with its store: a builder owns exactly the handles of its own
// store, whichever call made them (the one that recorded the node, `node`, or a graph's read of
// it), and a graph built from the store owns those with an id below its size; a store made by
// `GraphBuilder.from` owns the nodes of the graph it continues as well. The brand is a private
// field: no spread, structured clone or JSON sees it. Columns only grow, so a graph built from the
// store can keep them as they are; a builder that records more after a build copies them first.
// They grow eightfold: capacity never written costs no page (a fresh page is what costs, not an
// address), and copying is what touches them.

/** A node recorded by a builder: the builder's handle, or a built graph's node (Note [builder columns]). */
export class StoredNode implements Node {
  readonly id: number;
  readonly op: string;
  readonly inputs: readonly number[];
  readonly attrs: Attrs;
  readonly shape: Shape;
  readonly dtype: DType;
  declare readonly name?: string;
  declare readonly stage?: number;
  readonly #store: NodeStore;

  constructor(store: NodeStore, id: number, op: string, inputs: readonly number[], fields: NodeFields) {
    this.id = id;
    this.op = op;
    this.inputs = inputs;
    this.attrs = fields.attrs;
    this.shape = fields.shape;
    this.dtype = fields.dtype;
    if (fields.name !== undefined) (this as { name?: string }).name = fields.name;
    if (fields.stage !== undefined) (this as { stage?: number }).stage = fields.stage;
    this.#store = store;
  }

  /** The store that recorded `node`, if a builder did. */
  static storeOf(node: object): NodeStore | undefined {
    return #store in node ? (node as StoredNode).#store : undefined;
  }
}

/** A node's fields besides its id, op and inputs. */
export interface NodeFields {
  readonly attrs: Attrs;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly name?: string | undefined;
  readonly stage?: number | undefined;
}

/**
 * A node as a plain object with its own inputs array, its fields in the order a builder's handles have
 * them (nodes made on any path then share one object shape), for a NodeSource to make.
 */
export function nodeOf(id: number, op: string, inputs: ArrayLike<number>, fields: NodeFields): Node {
  const ins = new Array<number>(inputs.length);
  for (let k = 0; k < ins.length; k++) ins[k] = inputs[k]!;
  const { attrs, shape, dtype, name, stage } = fields;
  const base = { id, op, inputs: ins, attrs, shape, dtype };
  if (name === undefined && stage === undefined) return base;
  return { ...base, ...(name !== undefined ? { name } : {}), ...(stage !== undefined ? { stage } : {}) };
}

/** Node names to ids, in id order (a later id wins a name), from names by id: `NodeSource.names`. */
export function idsByName(namesById: ReadonlyMap<number, string>): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [id, name] of [...namesById].sort((x, y) => x[0] - y[0])) byName.set(name, id);
  return byName;
}

/**
 * Every node's op definition (undefined for a leaf) where nodes hold codes into a table of op names:
 * one registry lookup per distinct op, not per node (`NodeSource.defs`).
 */
export function defsByCode(
  opNames: readonly string[],
  opCode: ArrayLike<number>,
  size: number,
): (OpDef | undefined)[] {
  // Looked up where a node first uses it: a table may hold a name no node uses.
  const byCode = new Array<OpDef | undefined | null>(opNames.length).fill(null);
  const out = new Array<OpDef | undefined>(size);
  for (let id = 0; id < size; id++) {
    const code = opCode[id]!;
    let def = byCode[code];
    if (def === null) {
      const op = opNames[code]!;
      byCode[code] = def = kindOf(op) === OP ? getOp(op) : undefined;
    }
    out[id] = def;
  }
  return out;
}

type Column = Int32Array | Uint16Array | Uint8Array;

/** `array` with room for `need` entries: itself, or a copy eight times larger. */
function grown<A extends Column>(array: A, need: number): A {
  if (need <= array.length) return array;
  const next = new (array.constructor as new (n: number) => A)(Math.max(need, array.length * 8));
  next.set(array);
  return next;
}

/** A copy of `array` of the same capacity, its first `used` entries written (the rest costs no page). */
function copied<A extends Column>(array: A, used: number): A {
  const next = new (array.constructor as new (n: number) => A)(array.length);
  next.set(array.subarray(0, used));
  return next;
}

const DTYPE_CODES: readonly DType[] = ['float32', 'float64'];

/** A builder's nodes as columns (Note [builder columns]). */
export class NodeStore {
  private opCode = new Uint16Array(256);
  private dtypeCode = new Uint8Array(256);
  private kinds = new Uint8Array(256);
  private shapeIndex = new Int32Array(256);
  private attrIndex = new Int32Array(256);
  private inputStart = new Int32Array(256);
  private inputIds = new Int32Array(512);
  /** The distinct ops, shapes (by identity) and attribute objects the codes and indices point into. */
  private readonly opNames: string[] = [];
  private readonly opCodes = new Map<string, number>();
  private shapeTable: Shape[] = [];
  private attrTable: Attrs[] = [NO_ATTRS];
  /** Stages by id, made at the first annotated node (undefined where none). */
  private stages: (number | undefined)[] | null = null;
  private count = 0;
  /** Whether a built graph holds the columns as they are (copied before the next node). */
  private shared = false;

  /**
   * `base`: the graph whose nodes are the store's first ones (`GraphBuilder.from`). Its node objects
   * are the store's own where their names still agree, and they stay nodes of the store.
   */
  constructor(private readonly base: Graph | null = null) {}

  get size(): number {
    return this.count;
  }

  /** Records a node; returns its id. */
  push(op: string, inputs: readonly number[], fields: NodeFields): number {
    if (this.shared) this.unshare();
    const id = this.count;
    if (id + 2 > this.inputStart.length) this.grow(id + 2);
    const edges = this.inputStart[id]!;
    const end = edges + inputs.length;
    if (end > this.inputIds.length) this.inputIds = grown(this.inputIds, end);
    for (let k = 0; k < inputs.length; k++) this.inputIds[edges + k] = inputs[k]!;
    this.inputStart[id + 1] = end;
    let code = this.opCodes.get(op);
    if (code === undefined) {
      code = this.opNames.push(op) - 1;
      this.opCodes.set(op, code);
    }
    this.opCode[id] = code;
    this.kinds[id] = kindOf(op);
    this.dtypeCode[id] = fields.dtype === 'float32' ? 0 : 1;
    this.shapeIndex[id] = this.shapeOf(fields.shape, inputs);
    const attrs = fields.attrs;
    this.attrIndex[id] = attrs === NO_ATTRS ? 0 : this.attrTable.push(attrs) - 1;
    const stage = fields.stage;
    if (stage !== undefined) (this.stages ??= new Array(id))[id] = stage;
    else if (this.stages !== null) this.stages.push(undefined);
    this.count = id + 1;
    return id;
  }

  /** The index of `shape` in the table: an input's where it is that input's array, else a new one. */
  private shapeOf(shape: Shape, inputs: readonly number[]): number {
    const table = this.shapeTable;
    for (let k = 0; k < inputs.length; k++) {
      const i = this.shapeIndex[inputs[k]!]!;
      if (table[i] === shape) return i;
    }
    const last = table.length - 1;
    return last >= 0 && table[last] === shape ? last : table.push(shape) - 1;
  }

  private grow(need: number): void {
    this.inputStart = grown(this.inputStart, need);
    this.opCode = grown(this.opCode, need);
    this.dtypeCode = grown(this.dtypeCode, need);
    this.kinds = grown(this.kinds, need);
    this.shapeIndex = grown(this.shapeIndex, need);
    this.attrIndex = grown(this.attrIndex, need);
  }

  op(id: number): string {
    return this.opNames[this.opCode[id]!]!;
  }

  dtype(id: number): DType {
    return DTYPE_CODES[this.dtypeCode[id]!]!;
  }

  shape(id: number): Shape {
    return this.shapeTable[this.shapeIndex[id]!]!;
  }

  attrs(id: number): Attrs {
    return this.attrTable[this.attrIndex[id]!]!;
  }

  /** Node id's input ids, a new array. */
  inputsOf(id: number): number[] {
    const from = this.inputStart[id]!;
    const out = new Array<number>(this.inputStart[id + 1]! - from);
    for (let k = 0; k < out.length; k++) out[k] = this.inputIds[from + k]!;
    return out;
  }

  stageOf(id: number): number | undefined {
    return this.stages === null ? undefined : this.stages[id];
  }

  /** A handle on node id, named `name`: the base graph's own node where it has that name. */
  node(id: number, name?: string): Node {
    const base = this.base;
    if (base !== null && id < base.size && base.nameOf(id) === name) return base.nodeAt(id);
    return this.handle(id, name);
  }

  /**
   * A new handle on node id, named `name`, of this store even where the base graph has a node object
   * for it: for a pass that keeps no handle (a sweep's primal nodes), so that the base graph does not
   * make and keep one for every node.
   */
  handle(id: number, name?: string): Node {
    const fields = {
      attrs: this.attrs(id),
      shape: this.shape(id),
      dtype: this.dtype(id),
      name,
      stage: this.stageOf(id),
    };
    return new StoredNode(this, id, this.op(id), this.inputsOf(id), fields);
  }

  /** Whether `node` is a handle of this store, or a node of its base graph, on one of its first `size` nodes. */
  owns(node: Node, size = this.count): boolean {
    if (StoredNode.storeOf(node) === this) return Number.isInteger(node.id) && node.id >= 0 && node.id < size;
    const base = this.base;
    return base !== null && node.id < base.size && node.id < size && base.owns(node);
  }

  /**
   * The columns of the nodes so far, for a graph (Note [graph columns]); the store copies them before
   * the next node. The shapes by node are made when first read.
   */
  columns(): GraphColumns {
    this.shared = true;
    const n = this.count;
    const { shapeTable, shapeIndex } = this;
    let shapes: Shape[] | null = null;
    return {
      inputStart: this.inputStart.subarray(0, n + 1),
      inputIds: this.inputIds.subarray(0, this.inputStart[n]),
      kinds: this.kinds.subarray(0, n),
      get shapes(): readonly Shape[] {
        if (shapes === null) {
          shapes = new Array<Shape>(n);
          for (let id = 0; id < n; id++) shapes[id] = shapeTable[shapeIndex[id]!]!;
        }
        return shapes;
      },
    };
  }

  /**
   * A source for a graph of the nodes so far (Note [nodes on first read]), named by `names` (name to
   * id, in id order) and `labels` (id to name): snapshots of the builder's names at the build.
   */
  source(names: Map<string, number>, labels: Map<number, string>): NodeSource {
    this.shared = true;
    const size = this.count;
    const name = (id: number) => labels.get(id);
    return {
      size,
      node: (id) => this.node(id, name(id)),
      op: (id) => this.op(id),
      dtype: (id) => this.dtype(id),
      attrs: (id) => this.attrs(id),
      name,
      stage: (id) => this.stageOf(id),
      defs: () => defsByCode(this.opNames, this.opCode, size),
      names: () => names,
      owns: (node) => this.owns(node, size),
      continuing: (base) => ({ store: this.continuing(base, size), labels }),
    };
  }

  /**
   * A store of this store's first `size` nodes for a builder that continues `base`, the graph built
   * from them (`GraphBuilder.from`): the columns copied whole, not node by node. Nodes are only ever
   * appended, so the first `size` are still the graph's even after the builder recorded more.
   */
  continuing(base: Graph, size: number): NodeStore {
    const store = new NodeStore(base);
    store.copyFrom(this, size);
    for (const op of this.opNames) store.opCodes.set(op, store.opNames.push(op) - 1);
    store.count = size;
    return store;
  }

  /** Copies the columns a built graph holds, before recording more. */
  private unshare(): void {
    this.copyFrom(this, this.count);
    this.shared = false;
  }

  /** Takes copies of the columns of `from`'s first `n` nodes, and of its tables. */
  private copyFrom(from: NodeStore, n: number): void {
    this.opCode = copied(from.opCode, n);
    this.dtypeCode = copied(from.dtypeCode, n);
    this.kinds = copied(from.kinds, n);
    this.shapeIndex = copied(from.shapeIndex, n);
    this.attrIndex = copied(from.attrIndex, n);
    this.inputStart = copied(from.inputStart, n + 1);
    this.inputIds = copied(from.inputIds, from.inputStart[n]!);
    this.shapeTable = from.shapeTable.slice();
    this.attrTable = from.attrTable.slice();
    this.stages = from.stages === null ? null : from.stages.slice(0, n);
  }
}
