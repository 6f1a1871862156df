import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { FormatError } from '../errors.ts';
import { corrupt, decodeValue, hasOnlyKeys, isPlain } from './attr-values.ts';
import { checkGraph } from './check.ts';
import type { Graph } from './graph.ts';
import { fmtValue } from './print.ts';
import { decodeColumns, decodeOutputs, encodeBody } from './serialize-columns.ts';

export const GRAPH_MAGIC = 'backflow-graph';
/** The format version this module writes, and the newest it reads (it reads every older one too). */
export const GRAPH_FORMAT_VERSION = 3;
const CHECKSUM_BYTES = 4;

// Note [graph format]
// The magic string, the format version (an integer) and the body, as three msgpack values one after
// the other; from version 2, then four bytes: the CRC-32 (zlib's) of every byte before them,
// little-endian. The header is read first, so bytes of a newer version are refused before anything
// else is read; then the checksum, so damaged bytes are refused before their body is decoded (without
// it, 4.9% of the single-bit flips of a small graph decoded as another valid graph).
//
// The body of version 3 holds the nodes as columns (Note [graph columns]): a map of `size` (the node
// count); `ops`, `dtypes`, `shapes` and `attrs`, tables of the distinct values; `op`, `dtype`,
// `shape` and `attr`, each node's index into its table, and `arity`, each node's input count, as
// little-endian Uint32 columns in msgpack binary (an attribute object is written once however many
// nodes hold it, and they hold one object again when read; every empty one is entry 0); `inputs`, every node's input ids, node after node,
// a little-endian Int32 column; `names` and `stages`, [id, value] pairs for the nodes that have one;
// `outputs`, [[name, id], ...] (a list, so a duplicate name is seen, not overwritten). Versions 1
// and 2 (version 1 is version 2 without the checksum) still load: their body is {nodes, outputs},
// nodes a list of {op, inputs, shape, dtype, attrs, name?, stage?} whose ids are their positions.
// A msgpack map a node had the writer and the reader of a million-node graph make and collect
// millions of small objects: 5.6-7.3 s for the two, against 0.6-0.8 s with the columns, which are a
// few large arrays; the graph read is on them (Note [nodes on first read]), checked on them (Note
// [checks on columns]), and makes a node object only when one is read (figures:
// docs/measurements.md).
//
// Attribute values are tagged where msgpack alone would lose something: an array is ['a', ...items],
// an object ['o', key, value, ...], a tensor ['t', dtype, shape, bytes] with its raw little-endian
// bytes, -0 is ['-0'] (msgpack writes it as the integer 0), undefined ['u'].

// useRecords: false, so the bytes never depend on structure tables shared between instances;
// structuredClone: false, so that reading refuses msgpackr's references (a cycle, or one value under
// many keys that decodes into an exponential tree): serializeGraph never writes them.
const packr = new Packr({ useRecords: false, structuredClone: false });

/**
 * The graph as bytes: msgpack in format version 3 (its nodes as columns), ending in a CRC-32 of the
 * bytes before it. `deserializeGraph` reads them back (and files of versions 1 and 2).
 */
export function serializeGraph(graph: Graph): Uint8Array {
  // pack() returns a view into a shared arena: copy each part out at once.
  const parts = [GRAPH_MAGIC, GRAPH_FORMAT_VERSION, encodeBody(graph)].map(
    (v) => new Uint8Array(packr.pack(v)),
  );
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
  if (version === GRAPH_FORMAT_VERSION) {
    return checkGraph(decodeColumns(body));
  }
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
