import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { FormatError, GraphError } from '../errors.ts';
import { sizeOf } from '../tensor/shape.ts';
import { bytesPerElement, type DType, Tensor } from '../tensor/tensor.ts';
import { checkGraph } from './check.ts';
import type { Graph, Node } from './graph.ts';
import { fmtValue } from './print.ts';

export const GRAPH_MAGIC = 'backflow-graph';
/** The format version this module writes, and the newest it reads (it reads every older one too). */
export const GRAPH_FORMAT_VERSION = 2;
const CHECKSUM_BYTES = 4;

// Note [graph format]
// The magic string, the format version (an integer) and the body {nodes, outputs}, as three msgpack
// values one after the other; from version 2, then four bytes: the CRC-32 (zlib's) of every byte
// before them, little-endian. The header is read first, so bytes of a newer version are refused
// before anything else is read; then the checksum, so damaged bytes are refused before their body is
// decoded (without it, 4.9% of the single-bit flips of a small graph decoded as another valid graph).
// Version 1, the same without the checksum, still loads. nodes: [{op, inputs, shape, dtype, attrs,
// name?, stage?}], ids are positions; outputs: [[name, id], ...] (a list, so a duplicate name is
// seen, not overwritten). Attribute values are tagged where msgpack alone would lose something: an
// array is ['a', ...items], an object ['o', key, value, ...], a tensor ['t', dtype, shape, bytes] with
// its raw little-endian bytes, -0 is ['-0'] (msgpack writes it as the integer 0), undefined ['u'].

// useRecords: false, so the bytes never depend on structure tables shared between instances;
// structuredClone: false, so that reading refuses msgpackr's references (a cycle, or one value under
// many keys that decodes into an exponential tree): serializeGraph never writes them.
const packr = new Packr({ useRecords: false, structuredClone: false });

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MAX_DEPTH = 32;

/**
 * The graph as bytes: msgpack in format version 2, ending in a CRC-32 of the bytes before it.
 * `deserializeGraph` reads them back (and version 1 files).
 */
export function serializeGraph(graph: Graph): Uint8Array {
  const body = {
    nodes: graph.nodes.map(encodeNode),
    outputs: Object.entries(graph.outputs),
  };
  // pack() returns a view into a shared arena: copy each part out at once.
  const parts = [GRAPH_MAGIC, GRAPH_FORMAT_VERSION, body].map((v) => new Uint8Array(packr.pack(v)));
  const end = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(end + CHECKSUM_BYTES);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  new DataView(out.buffer).setUint32(end, crc32(out.subarray(0, end)), true);
  return out;
}

/**
 * Decodes and checks a serialized graph. Bytes that are not a graph of a supported version, or whose
 * checksum does not match, throw a FormatError; a well-formed encoding of a bad graph throws what
 * `checkGraph` throws.
 */
export function deserializeGraph(bytes: Uint8Array): Graph {
  if (!(bytes instanceof Uint8Array)) {
    throw new FormatError(`deserializeGraph: expected a Uint8Array, found ${fmtValue(bytes)}`, {
      phase: 'deserialize',
      expected: 'Uint8Array',
      found: fmtValue(bytes),
    });
  }
  const head = readValues(bytes, 2);
  const [magic, version] = head.values;
  if (head.values.length >= 1 && magic !== GRAPH_MAGIC) {
    throw corrupt(
      `not a backflow graph: expected the magic string '${GRAPH_MAGIC}', found ${fmtValue(magic)}`,
      {
        expected: GRAPH_MAGIC,
        found: fmtValue(magic),
      },
    );
  }
  const known = Number.isInteger(version) && (version as number) >= 1;
  if (head.values.length >= 2 && !(known && (version as number) <= GRAPH_FORMAT_VERSION)) {
    throw corrupt(
      known
        ? `graph format version ${version} is newer than this backflow supports (version ${GRAPH_FORMAT_VERSION}): upgrade backflow to read it`
        : `bad graph format version: expected an integer in [1, ${GRAPH_FORMAT_VERSION}], found ${fmtValue(version)}`,
      { expected: GRAPH_FORMAT_VERSION, found: version },
    );
  }
  if (head.values.length < 2) throw unreadable(bytes, head.error);
  const end = version === 1 ? bytes.length : checksummed(bytes, head.end);
  const region = bytes.subarray(head.end, end);
  const { values, end: bodyEnd, error } = readValues(region, 1);
  if (values.length < 1) throw unreadable(bytes, error);
  if (bodyEnd !== region.length) {
    throw corrupt(`trailing bytes: ${region.length - bodyEnd} bytes after the end of the graph`, {
      expected: head.end + bodyEnd,
      found: head.end + region.length,
    });
  }
  const body = values[0];
  if (!isPlain(body) || !hasOnlyKeys(body, ['nodes', 'outputs']) || !Array.isArray(body.nodes)) {
    throw corrupt(`bad graph body: expected {nodes, outputs}, found ${fmtValue(body)}`, {
      expected: '{nodes, outputs}',
      found: fmtValue(body),
    });
  }
  const nodes = body.nodes.map(decodeNode);
  return checkGraph({ nodes, outputs: decodeOutputs(body.outputs) });
}

/** Up to `count` msgpack values from the start of `bytes`, where the last ends, and what stopped them. */
function readValues(bytes: Uint8Array, count: number): { values: unknown[]; end: number; error: unknown } {
  const values: unknown[] = [];
  let end = 0;
  let error: unknown = null;
  try {
    if (bytes.length > 0) {
      packr.unpackMultiple(bytes, (value: unknown, _start?: number, stop?: number) => {
        values.push(value);
        end = stop ?? bytes.length;
        return values.length < count;
      });
    }
  } catch (err) {
    error = err;
  }
  return { values, end, error };
}

/** Bytes msgpack could not read to the end of the graph: cut short, or not msgpack. */
function unreadable(bytes: Uint8Array, error: unknown): FormatError {
  const truncated = error === null || (error as { incomplete?: boolean }).incomplete === true;
  const reason = error instanceof Error ? `: ${error.message}` : '';
  return corrupt(
    truncated
      ? `truncated graph: ${bytes.length} bytes end before the graph does${reason}`
      : `corrupt graph bytes${reason}`,
    { expected: 'a complete serialized graph', found: `${bytes.length} bytes` },
    error ?? undefined,
  );
}

/**
 * Where the bytes the checksum covers end (before its four), once the CRC-32 of them matches
 * (Note [graph format]); the header ends at `headerEnd`.
 */
function checksummed(bytes: Uint8Array, headerEnd: number): number {
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
  const end = bytes.length - CHECKSUM_BYTES;
  if (end < headerEnd) {
    throw corrupt(`truncated graph: ${bytes.length} bytes end before its checksum`, {
      expected: `at least ${headerEnd + CHECKSUM_BYTES} bytes`,
      found: `${bytes.length} bytes`,
    });
  }
  const stored = new DataView(bytes.buffer, bytes.byteOffset + end, CHECKSUM_BYTES).getUint32(0, true);
  const actual = crc32(bytes.subarray(0, end));
  if (stored !== actual) {
    throw corrupt(
      `the checksum does not match: the bytes are damaged or cut short (CRC-32 ${hex(actual)} of the ${end} bytes before the last 4, which say ${hex(stored)})`,
      { expected: hex(stored), found: hex(actual) },
    );
  }
  return end;
}

function corrupt(message: string, context: Record<string, unknown>, cause?: unknown): FormatError {
  return new FormatError(
    `deserializeGraph: ${message}`,
    { phase: 'deserialize', ...context },
    cause === undefined ? undefined : { cause },
  );
}

function encodeNode(node: Node): Record<string, unknown> {
  return {
    op: node.op,
    inputs: node.inputs,
    shape: node.shape,
    dtype: node.dtype,
    attrs: encodeValue(node.attrs, `%${node.id} attrs`, 0),
    ...(node.name !== undefined ? { name: node.name } : {}),
    ...(node.stage !== undefined ? { stage: node.stage } : {}),
  };
}

/** A node's attributes in the tagged form of Note [graph format] (for other encodings of a graph too). */
export function encodeAttrs(node: Node): unknown {
  return encodeValue(node.attrs, `%${node.id} attrs`, 0);
}

/** Attributes back from their tagged form; a FormatError if they are not. */
export function decodeAttrs(raw: unknown, id: number): unknown {
  if (!Array.isArray(raw) || raw[0] !== 'o')
    throw corrupt(`%${id} attrs: expected a tagged object, found ${fmtValue(raw)}`, { node: `%${id}` });
  return decodeValue(raw, `%${id} attrs`, 0);
}

/** An attribute value in the tagged form of Note [graph format]. */
function encodeValue(v: unknown, where: string, depth: number): unknown {
  if (depth > MAX_DEPTH) throw unserializable(where, 'nested too deeply (a cycle?)');
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Object.is(v, -0) ? ['-0'] : v;
  if (v === undefined) return ['u'];
  if (v instanceof Tensor) return ['t', v.dtype, [...v.shape], littleEndianBytes(v)];
  if (Array.isArray(v)) return ['a', ...v.map((x, i) => encodeValue(x, `${where}[${i}]`, depth + 1))];
  if (isPlain(v)) {
    const out: unknown[] = ['o'];
    for (const [k, x] of Object.entries(v)) out.push(k, encodeValue(x, `${where}.${k}`, depth + 1));
    return out;
  }
  throw unserializable(where, `a ${typeof v === 'object' ? v.constructor?.name : typeof v}`);
}

function unserializable(where: string, what: string): FormatError {
  return new FormatError(
    `serializeGraph: ${where} is ${what}; attributes must be plain data (numbers, strings, booleans, null, arrays, objects) or tensors`,
    { phase: 'serialize', node: where.split(' ')[0], expected: 'plain data or a Tensor', found: what },
  );
}

/** An attribute value back from its tagged form, no deeper than `encodeValue` writes. */
function decodeValue(v: unknown, where: string, depth: number): unknown {
  if (depth > MAX_DEPTH) {
    const why = `nested too deeply (deeper than ${MAX_DEPTH}, which serializeGraph refuses to write)`;
    throw corrupt(`${where}: ${why}`, { expected: `at most ${MAX_DEPTH} levels` });
  }
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return v;
  if (!Array.isArray(v)) throw corrupt(`${where}: unexpected ${fmtValue(v)}`, { found: fmtValue(v) });
  const bad = (why: string) => corrupt(`${where}: ${why}`, { found: fmtValue(v) });
  switch (v[0]) {
    case 'a':
      return v.slice(1).map((x, i) => decodeValue(x, `${where}[${i}]`, depth + 1));
    case 'o': {
      if (v.length % 2 !== 1) throw bad('an object with a key and no value');
      const out: Record<string, unknown> = {};
      for (let i = 1; i < v.length; i += 2) {
        const key = v[i];
        if (typeof key !== 'string' || Object.hasOwn(out, key))
          throw bad(`bad or repeated key ${fmtValue(key)}`);
        // defineProperty, so that a key named __proto__ is a key and not a prototype.
        Object.defineProperty(out, key, {
          value: decodeValue(v[i + 1], `${where}.${key}`, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    case 't':
      return decodeTensor(v, bad);
    case '-0':
      if (v.length !== 1) throw bad('a malformed -0');
      return -0;
    case 'u':
      if (v.length !== 1) throw bad('a malformed undefined');
      return undefined;
    default:
      throw bad(`unknown tag ${fmtValue(v[0])}`);
  }
}

function decodeTensor(v: unknown[], bad: (why: string) => FormatError): Tensor {
  const [, dtype, shape, bytes] = v;
  if (v.length !== 4 || (dtype !== 'float32' && dtype !== 'float64')) throw bad('a malformed tensor');
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
    throw bad(`a tensor with a bad shape ${fmtValue(shape)}`);
  const width = bytesPerElement(dtype as DType);
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== sizeOf(shape) * width) {
    throw bad(
      `a ${dtype}[${shape.join(',')}] tensor needs ${sizeOf(shape) * width} bytes, found ${bytes instanceof Uint8Array ? bytes.byteLength : fmtValue(bytes)}`,
    );
  }
  // Decoded binary is a view at any (often unaligned) offset: copy into a fresh owned buffer.
  const buffer = new ArrayBuffer(bytes.byteLength);
  const owned = new Uint8Array(buffer);
  owned.set(bytes);
  if (!LITTLE_ENDIAN) swapBytes(owned, width);
  const data = dtype === 'float32' ? new Float32Array(buffer) : new Float64Array(buffer);
  return new Tensor(dtype, shape, data);
}

function littleEndianBytes(t: Tensor): Uint8Array {
  const view = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (LITTLE_ENDIAN) return view;
  const copy = view.slice();
  swapBytes(copy, t.data.BYTES_PER_ELEMENT);
  return copy;
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

const NODE_KEYS = ['op', 'inputs', 'shape', 'dtype', 'attrs', 'name', 'stage'];

/** A node's fields as encoded, attrs decoded; checkGraph validates the rest. */
function decodeNode(raw: unknown, id: number): unknown {
  if (!isPlain(raw) || !hasOnlyKeys(raw, NODE_KEYS) || !Array.isArray(raw.attrs) || raw.attrs[0] !== 'o') {
    throw corrupt(`node %${id}: expected {${NODE_KEYS.join(', ')}}, found ${fmtValue(raw)}`, {
      node: `%${id}`,
      found: fmtValue(raw),
    });
  }
  const { name, stage } = raw;
  return {
    id,
    op: raw.op,
    inputs: raw.inputs,
    shape: raw.shape,
    dtype: raw.dtype,
    attrs: decodeValue(raw.attrs, `%${id} attrs`, 0),
    ...('name' in raw ? { name } : {}),
    ...('stage' in raw ? { stage } : {}),
  };
}

function decodeOutputs(raw: unknown): Record<string, unknown> {
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

function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function hasOnlyKeys(v: Record<string, unknown>, keys: readonly string[]): boolean {
  return Object.keys(v).every((k) => keys.includes(k));
}
