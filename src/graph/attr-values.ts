import { FormatError } from '../errors.ts';
import { sizeOf } from '../tensor/shape.ts';
import { bytesPerElement, type DType, Tensor } from '../tensor/tensor.ts';
import type { Node } from './graph.ts';
import { fmtValue } from './print.ts';

// Attribute values in the tagged form of a graph file (Note [graph format], src/graph/serialize.ts),
// and what the readers of its parts share: the FormatError of bytes that are not what a writer
// writes, and the little-endian bytes of a tensor or a column.

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MAX_DEPTH = 32;

/** A FormatError of deserializeGraph: bytes that are not what serializeGraph writes. */
export function corrupt(message: string, context: Record<string, unknown>, cause?: unknown): FormatError {
  return new FormatError(
    `deserializeGraph: ${message}`,
    { phase: 'deserialize', ...context },
    cause === undefined ? undefined : { cause },
  );
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
export function encodeValue(v: unknown, where: string, depth: number): unknown {
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
export function decodeValue(v: unknown, where: string, depth: number): unknown {
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
  const buffer = ownedFromLittleEndian(bytes, width);
  const data = dtype === 'float32' ? new Float32Array(buffer) : new Float64Array(buffer);
  return new Tensor(dtype, shape, data);
}

/**
 * Little-endian values of `width` bytes in decoded msgpack binary, a view at any (often unaligned)
 * offset, copied into a fresh buffer of their own in this machine's byte order.
 */
export function ownedFromLittleEndian(bytes: Uint8Array, width: number): ArrayBuffer {
  const owned = new Uint8Array(bytes.byteLength);
  owned.set(bytes);
  if (!LITTLE_ENDIAN) swapBytes(owned, width);
  return owned.buffer;
}

/** The bytes of a tensor's data or of a column, little-endian. */
export function littleEndianBytes(t: Tensor | Uint32Array | Int32Array): Uint8Array {
  const data = t instanceof Tensor ? t.data : t;
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return view;
  const copy = view.slice();
  swapBytes(copy, data.BYTES_PER_ELEMENT);
  return copy;
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

export function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function hasOnlyKeys(v: Record<string, unknown>, keys: readonly string[]): boolean {
  return Object.keys(v).every((k) => keys.includes(k));
}
