// The graph as the coordinator hands it to its workers: columns, not the msgpack file format.
import { FormatError } from '../errors.ts';
import { decodeAttrs, encodeAttrs } from '../graph/attr-values.ts';
import { kindOf } from '../graph/columns.ts';
import { Graph, type NodeSource } from '../graph/graph.ts';
import { defsByCode, idsByName, nodeOf } from '../graph/store.ts';
import type { Attrs } from '../ops/op.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { DTYPES } from '../tensor/tensor.ts';

// Note [packed graph]
// Every worker needs the whole graph to compile the plan. The file format of the time (serialize.ts,
// format version 2: one msgpack map per node) took about 5 s per worker to decode and re-check for a
// million nodes, and 1 s to write, most of a runtime's start. A packed graph is a handful of typed
// arrays (op, dtype, inputs and shapes as offsets into flat columns) plus the few non-empty
// attributes in the tagged form of Note [graph format]; it travels by structured clone (over bytes,
// in an init frame: frame.ts) and is rebuilt in a fraction of the time (its nodes made as they are
// read: Note [nodes on first read]). It is not re-checked on arrival: it is the coordinator's own
// graph, which `checkGraph` passed before any worker started (invariant 8); `unpackGraph` only checks
// that the columns hold together, every node's at once, so a corrupted handoff is a FormatError,
// never a crash or a wrong graph.

export interface PackedGraph {
  readonly size: number;
  /** Op names; `op[id]` indexes them. */
  readonly ops: readonly string[];
  readonly op: Int32Array<ArrayBuffer>;
  /** Index into DTYPES. */
  readonly dtype: Uint8Array<ArrayBuffer>;
  /** Node id's inputs are inputs[inputStart[id] .. inputStart[id + 1]). */
  readonly inputStart: Int32Array<ArrayBuffer>;
  readonly inputs: Int32Array<ArrayBuffer>;
  /** Node id's shape is dims[shapeStart[id] .. shapeStart[id + 1]): a size, or -1 - i for symbols[i]. */
  readonly shapeStart: Int32Array<ArrayBuffer>;
  readonly dims: Int32Array<ArrayBuffer>;
  readonly symbols: readonly string[];
  /** Sparse: only nodes that have them. Attributes in the tagged form of Note [graph format]. */
  readonly attrs: readonly (readonly [number, unknown])[];
  readonly names: readonly (readonly [number, string])[];
  readonly stages: readonly (readonly [number, number])[];
  readonly outputs: readonly (readonly [string, number])[];
}

/**
 * The graph as columns (cloned to each worker: the columns are small next to the nodes). `shared`:
 * the columns are made in shared memory (Note [shared columns]), each written once.
 */
export function packGraph(graph: Graph, { shared = false }: { shared?: boolean } = {}): PackedGraph {
  // Each node read from the graph's columns where it has them (Note [builder columns]), not kept.
  const read = graph.reader();
  const size = graph.size;
  const ops: string[] = [];
  const opIndex = new Map<string, number>();
  const symbols: string[] = [];
  const symbolIndex = new Map<string, number>();
  // Memory is written once, where it is shipped from: fresh pages cost more here than the copy.
  const buffer = (bytes: number) =>
    (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes)) as ArrayBuffer;
  const int32 = (n: number) => new Int32Array(buffer(4 * n));
  // The topology is the graph's own columns (Note [graph columns]), copied as they are.
  const columns = graph.columns;
  const inputStart = int32(size + 1);
  inputStart.set(columns.inputStart);
  const inputs = int32(columns.inputIds.length);
  inputs.set(columns.inputIds);
  const op = int32(size);
  const dtype = new Uint8Array(buffer(size));
  const shapeStart = int32(size + 1);
  let dimCount = 0;
  for (let id = 0; id < size; id++) dimCount += columns.shapes[id]!.length;
  const dims = int32(dimCount);
  const attrs: [number, unknown][] = [];
  const names: [number, string][] = [];
  const stages: [number, number][] = [];
  let d = 0;
  for (let id = 0; id < size; id++) {
    const n = read(id);
    let k = opIndex.get(n.op);
    if (k === undefined) {
      k = ops.push(n.op) - 1;
      opIndex.set(n.op, k);
    }
    op[id] = k;
    dtype[id] = n.dtype === 'float32' ? 0 : 1;
    shapeStart[id] = d;
    for (const dim of n.shape) {
      if (typeof dim === 'number') dims[d++] = dim;
      else {
        let s = symbolIndex.get(dim);
        if (s === undefined) {
          s = symbols.push(dim) - 1;
          symbolIndex.set(dim, s);
        }
        dims[d++] = -1 - s;
      }
    }
    for (const _ in n.attrs) {
      attrs.push([id, encodeAttrs(n)]);
      break;
    }
    if (n.stage !== undefined) stages.push([id, n.stage]);
  }
  // The graph's name index, in id order as a walk of the nodes finds them, without asking every node.
  for (const [name, id] of graph.names()) names.push([id, name]);
  shapeStart[size] = d;
  return {
    size,
    ops,
    op,
    dtype,
    inputStart,
    inputs,
    shapeStart,
    dims,
    symbols,
    attrs,
    names,
    stages,
    outputs: Object.entries(graph.outputs),
  };
}

/** The graph back from its columns; a FormatError if they do not hold together. */
export function unpackGraph(p: PackedGraph): Graph {
  const size = p?.size;
  if (!Number.isInteger(size) || size < 0) throw corrupt(`a size, found ${String(size)}`);
  const { op, dtype, inputStart, inputs, shapeStart, dims, ops, symbols } = p;
  const columns = [op, inputStart, inputs, shapeStart, dims];
  const lists = [ops, symbols, p.attrs, p.names, p.stages, p.outputs];
  if (
    !columns.every((c) => c instanceof Int32Array) ||
    !(dtype instanceof Uint8Array) ||
    !lists.every((l) => Array.isArray(l))
  )
    throw corrupt('typed-array columns and lists of ops, symbols, attributes, names, stages and outputs');
  if (
    op.length !== size ||
    dtype.length !== size ||
    inputStart.length !== size + 1 ||
    shapeStart.length !== size + 1
  )
    throw corrupt(`columns of ${size} nodes`);
  if (inputStart[0] !== 0 || shapeStart[0] !== 0)
    throw corrupt('offsets that start at the start of inputs and dims');
  if (inputStart[size] !== inputs.length || shapeStart[size] !== dims.length)
    throw corrupt('offsets that end at the end of inputs and dims');
  // The sparse lists by id (a later entry of one id wins, as the cursor over them did).
  const attrsOf = new Map<number, Attrs>();
  for (const [id, encoded] of p.attrs) {
    if (!Number.isInteger(id) || id < 0 || id >= size) throw corrupt(`attributes of a node id, found ${id}`);
    attrsOf.set(id, decodeAttrs(encoded, id) as Attrs);
  }
  const nameOf = new Map<number, string>();
  for (const [id, name] of p.names) {
    if (!Number.isInteger(id) || id < 0 || id >= size || typeof name !== 'string')
      throw corrupt(`a node id and its name, found ${id}`);
    nameOf.set(id, name);
  }
  const stageOf = new Map<number, number>();
  for (const [id, stage] of p.stages) {
    if (!Number.isInteger(id) || id < 0 || id >= size || !Number.isInteger(stage))
      throw corrupt(`a node id and its stage, found ${id}`);
    stageOf.set(id, stage);
  }
  const kinds = new Uint8Array(size);
  const shapeOf = new Array<Shape>(size);
  // Note [shared shapes]: nodes of one shape share one array, and nodes without attributes one object.
  const shapes = new Map<string, Shape>();
  const noAttrs = {};
  // The last node's shape and its dims: consecutive nodes mostly share one, found without a key.
  let last: Shape | null = null;
  let l0 = 0;
  let l1 = 0;
  // Every node checked here, none made (Note [nodes on first read]): making one cannot fail.
  for (let id = 0; id < size; id++) {
    const opName = ops[op[id]!];
    const i0 = inputStart[id]!;
    const i1 = inputStart[id + 1]!;
    const s0 = shapeStart[id]!;
    const s1 = shapeStart[id + 1]!;
    if (typeof opName !== 'string' || DTYPES[dtype[id]!] === undefined || i0 > i1 || s0 > s1)
      throw corrupt(`node %${id}: an op, a dtype and its column ranges`);
    for (let i = i0; i < i1; i++) {
      const input = inputs[i]!;
      // Topological order: an input comes before its consumer.
      if (input < 0 || input >= id) throw corrupt(`node %${id}: inputs before it, found %${input}`);
    }
    let shape: Shape | null = last !== null && sameDims(dims, s0, s1, l0, l1) ? last : null;
    if (shape === null) {
      let key = '';
      for (let s = s0; s < s1; s++) {
        const dim = dims[s]!;
        if (dim < 0 && symbols[-1 - dim] === undefined)
          throw corrupt(`node %${id}: a known dimension symbol, found ${dim}`);
        key += `${dim},`;
      }
      shape = shapes.get(key) ?? null;
      if (shape === null) {
        const dimsOf = new Array<Dim>(s1 - s0);
        for (let s = s0; s < s1; s++) dimsOf[s - s0] = dims[s]! < 0 ? symbols[-1 - dims[s]!]! : dims[s]!;
        shape = dimsOf;
        shapes.set(key, shape);
      }
      last = shape;
      l0 = s0;
      l1 = s1;
    }
    kinds[id] = kindOf(opName);
    shapeOf[id] = shape;
  }
  const outputs: Record<string, number> = {};
  for (const [name, id] of p.outputs) {
    if (!Number.isInteger(id) || id < 0 || id >= size)
      throw corrupt(`output ${name}: a node id, found ${id}`);
    Object.defineProperty(outputs, name, { value: id, enumerable: true, writable: true, configurable: true });
  }
  const source: NodeSource = {
    size,
    op: (id) => ops[op[id]!]!,
    dtype: (id) => DTYPES[dtype[id]!]!,
    attrs: (id) => attrsOf.get(id) ?? noAttrs,
    name: (id) => nameOf.get(id),
    stage: (id) => stageOf.get(id),
    node: (id) =>
      nodeOf(id, ops[op[id]!]!, inputs.subarray(inputStart[id]!, inputStart[id + 1]!), {
        attrs: attrsOf.get(id) ?? noAttrs,
        shape: shapeOf[id]!,
        dtype: DTYPES[dtype[id]!]!,
        name: nameOf.get(id),
        stage: stageOf.get(id),
      }),
    names: () => idsByName(nameOf),
    defs: () => defsByCode(ops, op, size),
  };
  // The graph's columns are these very inputs (Note [graph columns]): not made again from the nodes.
  return Graph.fromSource(source, outputs, { inputStart, inputIds: inputs, kinds, shapes: shapeOf });
}

/** Whether dims[a0 .. a1) and dims[b0 .. b1) are the same dimensions. */
function sameDims(dims: Int32Array, a0: number, a1: number, b0: number, b1: number): boolean {
  if (a1 - a0 !== b1 - b0) return false;
  for (let k = 0; k < a1 - a0; k++) if (dims[a0 + k] !== dims[b0 + k]) return false;
  return true;
}

// Note [shared shapes]
// A worker reads every node's shape (the graph's `shapes` column), a million on the large lane graph,
// and each node had a shape array and an attribute object of its own, alive for the runtime's life:
// most of the unpacking's time went to the collector moving them to the old generation. Shapes and
// attributes are read-only (Node's fields are readonly, and nothing writes them), and a graph has few
// distinct shapes, so nodes of one shape share its array and nodes without attributes share one empty
// object. The nodes themselves are made on first read (Note [nodes on first read] in graph.ts).

function corrupt(expected: string): FormatError {
  return new FormatError(`unpackGraph: expected ${expected}`, { phase: 'deserialize', expected });
}
