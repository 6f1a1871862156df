import { GraphError } from '../errors.ts';
import type { Attrs } from '../ops/op.ts';
import type { Shape } from '../tensor/shape.ts';
import type { DType } from '../tensor/tensor.ts';
import {
  corrupt,
  decodeAttrs,
  encodeValue,
  hasOnlyKeys,
  isPlain,
  littleEndianBytes,
  ownedFromLittleEndian,
} from './attr-values.ts';
import { kindOf } from './columns.ts';
import { Graph, type NodeSource } from './graph.ts';
import { fmtValue } from './print.ts';
import { defsByCode, idsByName, nodeOf } from './store.ts';

// The body of a graph file of format version 3: its nodes as columns (Note [graph format],
// src/graph/serialize.ts).

/** Indices into a table of distinct values, each value added on first sight. */
class Table<K, V> {
  readonly values: V[] = [];
  private readonly index = new Map<K, number>();

  indexOf(key: K, value: () => V): number {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.values.push(value()) - 1;
      this.index.set(key, i);
    }
    return i;
  }
}

/** The body of format version 3: the graph's nodes as columns (Note [graph format]). */
export function encodeBody(graph: Graph): Record<string, unknown> {
  const n = graph.size;
  const { inputStart, inputIds, shapes } = graph.columns;
  const op = new Uint32Array(n);
  const dtype = new Uint32Array(n);
  const shape = new Uint32Array(n);
  const attr = new Uint32Array(n);
  const arity = new Uint32Array(n);
  const ops = new Table<string, string>();
  const dtypes = new Table<string, string>();
  // Shapes by their printed dims (a node's shape array is often its own), then by identity.
  const shapeTable = new Table<string, Shape>();
  const shapeByRef = new Map<Shape, number>();
  // Attributes by identity; every empty object is the first entry.
  const attrTable = new Table<Attrs, unknown>();
  attrTable.indexOf(EMPTY_ATTRS, () => ['o']);
  const names: [number, string][] = [];
  const stages: [number, number][] = [];
  for (let id = 0; id < n; id++) {
    op[id] = ops.indexOf(graph.opOf(id), () => graph.opOf(id));
    dtype[id] = dtypes.indexOf(graph.dtypeOf(id), () => graph.dtypeOf(id));
    const dims = shapes[id]!;
    let s = shapeByRef.get(dims);
    if (s === undefined) {
      s = shapeTable.indexOf(JSON.stringify(dims), () => dims);
      shapeByRef.set(dims, s);
    }
    shape[id] = s;
    const attrs = graph.attrsOf(id);
    attr[id] = isEmptyPlain(attrs)
      ? 0
      : attrTable.indexOf(attrs, () => encodeValue(attrs, `%${id} attrs`, 0));
    arity[id] = inputStart[id + 1]! - inputStart[id]!;
    const name = graph.nameOf(id);
    if (name !== undefined) names.push([id, name]);
    const stage = graph.stageOf(id);
    if (stage !== undefined) stages.push([id, stage]);
  }
  return {
    size: n,
    ops: ops.values,
    dtypes: dtypes.values,
    shapes: shapeTable.values,
    attrs: attrTable.values,
    op: littleEndianBytes(op),
    dtype: littleEndianBytes(dtype),
    shape: littleEndianBytes(shape),
    attr: littleEndianBytes(attr),
    arity: littleEndianBytes(arity),
    inputs: littleEndianBytes(inputIds),
    names,
    stages,
    outputs: Object.entries(graph.outputs),
  };
}

const EMPTY_ATTRS: Attrs = {};

/** Whether `v` is a plain object with no key that `encodeValue` would write. */
function isEmptyPlain(v: Attrs): boolean {
  if (!isPlain(v)) return false;
  for (const key in v) if (Object.hasOwn(v, key)) return false;
  return true;
}

const BODY_KEYS = [
  'size',
  'ops',
  'dtypes',
  'shapes',
  'attrs',
  'op',
  'dtype',
  'shape',
  'attr',
  'arity',
  'inputs',
  'names',
  'stages',
  'outputs',
];

/**
 * The graph of a version 3 body (Note [graph format]) on its columns, its nodes made when first read
 * (Note [nodes on first read]): every index within its table and every column of its length, or a
 * FormatError; what the tables hold is checkGraph's to check, as in a node of version 2.
 */
export function decodeColumns(body: unknown): Graph {
  const expected = `{${BODY_KEYS.join(', ')}}`;
  if (!isPlain(body) || !hasOnlyKeys(body, BODY_KEYS) || !BODY_KEYS.every((k) => Object.hasOwn(body, k))) {
    throw corrupt(`bad graph body: expected ${expected}, found ${fmtValue(body)}`, {
      expected,
      found: fmtValue(body),
    });
  }
  const { size } = body;
  if (!Number.isSafeInteger(size) || (size as number) < 0)
    throw corrupt(`size: expected a node count, found ${fmtValue(size)}`, { found: fmtValue(size) });
  const n = size as number;
  const table = (key: string): unknown[] => {
    const t = body[key];
    if (!Array.isArray(t))
      throw corrupt(`${key}: expected an array, found ${fmtValue(t)}`, { found: fmtValue(t) });
    return t;
  };
  const [ops, dtypes, shapeTable, attrTable] = [
    table('ops'),
    table('dtypes'),
    table('shapes'),
    table('attrs'),
  ];
  const op = indexColumn(body.op, 'op', n, ops.length);
  const dtype = indexColumn(body.dtype, 'dtype', n, dtypes.length);
  const shape = indexColumn(body.shape, 'shape', n, shapeTable.length);
  const attr = indexColumn(body.attr, 'attr', n, attrTable.length);
  const arity = column(body.arity, 'arity', n, Uint32Array);
  let edges = 0;
  for (let id = 0; id < n; id++) edges += arity[id]!;
  const inputIds = column(body.inputs, 'inputs', edges, Int32Array);
  const inputStart = new Int32Array(n + 1);
  for (let id = 0; id < n; id++) inputStart[id + 1] = inputStart[id]! + arity[id]!;
  const names = pairs(table('names'), 'names', n);
  const stages = pairs(table('stages'), 'stages', n);
  const outputs = decodeOutputs(body.outputs);
  // Each table entry of attributes decoded once, where a node first uses it (its errors name that node).
  const attrs = new Array<unknown>(attrTable.length);
  const kinds = new Uint8Array(n);
  const shapes = new Array<Shape>(n);
  const opKinds = ops.map((o) => kindOf(o as string));
  for (let id = 0; id < n; id++) {
    const a = attr[id]!;
    attrs[a] ??= decodeAttrs(attrTable[a], id);
    kinds[id] = opKinds[op[id]!]!;
    shapes[id] = shapeTable[shape[id]!] as Shape;
  }
  const source: NodeSource = {
    size: n,
    op: (id) => ops[op[id]!] as string,
    dtype: (id) => dtypes[dtype[id]!] as DType,
    attrs: (id) => attrs[attr[id]!] as Attrs,
    name: (id) => names.get(id) as string | undefined,
    stage: (id) => stages.get(id) as number | undefined,
    node: (id) =>
      nodeOf(id, ops[op[id]!] as string, inputIds.subarray(inputStart[id]!, inputStart[id + 1]!), {
        attrs: attrs[attr[id]!] as Attrs,
        shape: shapes[id]!,
        dtype: dtypes[dtype[id]!] as DType,
        name: names.get(id) as string | undefined,
        stage: stages.get(id) as number | undefined,
      }),
    names: () => idsByName(names as Map<number, string>),
    // Read only once the graph is checked: every op is then a string, and known.
    defs: () => defsByCode(ops as string[], op, n),
  };
  return Graph.fromSource(source, outputs as Record<string, number>, { inputStart, inputIds, kinds, shapes });
}

type ColumnType = typeof Uint32Array | typeof Int32Array;

/** A column of `count` little-endian values in msgpack binary, copied into an array of its own. */
function column<C extends ColumnType>(raw: unknown, key: string, count: number, type: C): InstanceType<C> {
  const width = type.BYTES_PER_ELEMENT;
  if (!(raw instanceof Uint8Array) || raw.byteLength !== count * width) {
    const found = raw instanceof Uint8Array ? `${raw.byteLength} bytes` : fmtValue(raw);
    throw corrupt(
      `${key}: expected ${count} values of ${width} bytes (${count * width} bytes), found ${found}`,
      {
        expected: count * width,
        found,
      },
    );
  }
  return new type(ownedFromLittleEndian(raw, width)) as InstanceType<C>;
}

/** A column of `count` indices into a table of `length` entries. */
function indexColumn(raw: unknown, key: string, count: number, length: number): Uint32Array {
  const out = column(raw, key, count, Uint32Array);
  for (let id = 0; id < count; id++) {
    if (out[id]! >= length) {
      throw corrupt(`%${id}: ${key} ${out[id]} is not an entry of the table of ${length}`, {
        node: `%${id}`,
        expected: `an index in [0, ${length - 1}]`,
        found: out[id],
      });
    }
  }
  return out;
}

/** [id, value] pairs, each id a node's and given once. */
function pairs(raw: unknown[], key: string, count: number): Map<number, unknown> {
  const out = new Map<number, unknown>();
  for (const pair of raw) {
    const id = Array.isArray(pair) && pair.length === 2 ? pair[0] : undefined;
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= count || out.has(id as number)) {
      throw corrupt(
        `${key}: expected [id, value] pairs, one per node id in [0, ${count - 1}], found ${fmtValue(pair)}`,
        {
          found: fmtValue(pair),
        },
      );
    }
    out.set(id as number, (pair as unknown[])[1]);
  }
  return out;
}

/** The outputs, [[name, id], ...], as an object without a prototype's keys; each name once. */
export function decodeOutputs(raw: unknown): Record<string, unknown> {
  if (!Array.isArray(raw)) throw corrupt(`outputs: expected [[name, id], ...], found ${fmtValue(raw)}`, {});
  const out: Record<string, unknown> = {};
  for (const pair of raw) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string')
      throw corrupt(`outputs: expected a [name, id] pair, found ${fmtValue(pair)}`, {
        found: fmtValue(pair),
      });
    const [name, id] = pair;
    if (Object.hasOwn(out, name)) {
      throw new GraphError(`duplicate output name '${name}' (%${fmtValue(out[name])} and %${fmtValue(id)})`, {
        node: name,
        expected: 'unique output names',
        found: [out[name], id],
      });
    }
    Object.defineProperty(out, name, { value: id, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
