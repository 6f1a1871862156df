// Envelopes and host inits as bytes: what a wire without structured clone (memory, TCP, NATS)
// carries. The only module that imports msgpackr for the wire.
import { addExtension, Packr } from 'msgpackr';
import { ProtocolError } from '../errors.ts';
import { align8 } from './batch.ts';
import { Check, isPlain } from './check.ts';
import type { HostInit } from './control.ts';
import { type Envelope, PROTOCOL_VERSION } from './envelope.ts';
import type { PackedGraph } from './packed-graph.ts';

// Note [byte framing]
// A frame is one envelope (Note [columnar envelope] in batch.ts) in one Uint8Array, little-endian:
//   a fixed head of 10 Int32 words: magic 'BFLW', protocol version, generation, sender, message
//     count, head length (Int32s), payload bytes, large tensors, object bytes, and the cluster id
//     (0 unless the wire stamps its runtime's: Note [stream framing] in tcp-wire.ts);
//   the head's rows (padded to 8 bytes), the payload (a multiple of 8 bytes);
//   each large tensor as a length (two words, low then high) and its bytes (padded to 8), or only the
//     length, its high word's top bit set (BESIDE), when the bytes travel beside the frame (Note
//     [tensors beside the frame] in frame-cutter.ts);
//   the object messages as one msgpack array (msgpackr with useRecords: false, so that no frame
//   depends on a structure table another one defined; -0 travels as an extension: msgpack writes it
//   as the integer 0).
// Tensor bytes are copied as bytes, so NaN payloads, -0 and denormals arrive bit for bit. The version
// comes right after the magic, so a frame of a newer protocol is named as such whatever its layout.
// `decodeFrame` checks that every section fits, that nothing follows the last one, and that the
// objects decode to an array; the envelope it rebuilds (every section copied out, on buffers of its
// own: nothing it returns refers to the frame, which a TCP wire reuses, Note [stream framing]) then
// goes through the same checks as one that came by structured clone (batch-reader.ts).
//
// Note [byte wires and recycled storage]
// A worker recycles a step's storages when the step is over on its host (Note [step arena] in
// src/actor/host.ts), and a storage it sent over a byte wire was never detached: it goes back to the
// pool and is overwritten by the next step. So a byte wire encodes an envelope into its frame when the
// link posts it, copying every tensor's bytes, and holds nothing of the sender's after `post`
// returns. Until then the link holds the tensor, as a port's link holds a queued transfer: the shell
// flushes its links before anything recycles (HostShell, before startStep and applyUpdate). Tested
// with a poisoned pool recycled right after a post (test/protocol/frame.test.ts); the loopback
// runtime runs its storage-pool tests poisoned too.

const MAGIC = 0x574c4642; // 'BFLW' as bytes
const INIT_MAGIC = 0x494c4642; // 'BFLI'
const HEAD_WORDS = 10;
const HEAD_BYTES = HEAD_WORDS * 4;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** -0 in an object message: msgpack has no negative integer zero. */
class NegativeZero {}
const NEGATIVE_ZERO = new NegativeZero();
addExtension({ Class: NegativeZero, type: 0x2d, write: () => 0, read: () => -0 });
// useRecords: false, so the bytes never depend on structure tables shared between instances.
const packr = new Packr({ useRecords: false });

/** Set in a large tensor's high length word when its bytes travel beside the frame. */
const BESIDE = 2 ** 31;

/**
 * A frame and the large tensors that came beside it (Note [tensors beside the frame]), as a TCP wire
 * hands them to its receiver: decoded together, by `decodeFrame(frame, check, blobs)`.
 */
export class FrameWithBlobs {
  constructor(
    readonly frame: Uint8Array,
    readonly blobs: readonly ArrayBuffer[],
  ) {}
}

/**
 * The envelope as one frame of bytes (Note [byte framing]); its tensors are copied, never kept. With
 * `beside`, its large tensors are only named by their lengths: the caller sends their buffers ahead
 * of the frame (Note [tensors beside the frame]).
 */
export function encodeFrame(e: Envelope, beside = false): Uint8Array<ArrayBuffer> {
  checkByteOrder();
  const objects = e.objects.length === 0 ? null : pack(marked(e.objects, 0), 'objects');
  let size = HEAD_BYTES + align8(e.head.byteLength) + e.payload.byteLength;
  for (const b of e.buffers) size += 8 + (beside ? 0 : align8(b.byteLength));
  size += objects?.length ?? 0;
  const frame = new Uint8Array(size);
  const words = new DataView(frame.buffer);
  const objectBytes = objects?.length ?? 0;
  const head = [
    MAGIC,
    e.v,
    e.gen,
    e.from,
    e.count,
    e.head.length,
    e.payload.byteLength,
    e.buffers.length,
    objectBytes,
  ];
  for (const [i, w] of head.entries()) words.setInt32(i * 4, w, true);
  let at = HEAD_BYTES;
  frame.set(new Uint8Array(e.head.buffer, e.head.byteOffset, e.head.byteLength), at);
  at += align8(e.head.byteLength);
  frame.set(new Uint8Array(e.payload), at);
  at += e.payload.byteLength;
  for (const b of e.buffers) {
    words.setUint32(at, b.byteLength % 2 ** 32, true);
    words.setUint32(at + 4, Math.floor(b.byteLength / 2 ** 32) + (beside ? BESIDE : 0), true);
    if (beside) at += 8;
    else {
      frame.set(new Uint8Array(b), at + 8);
      at += 8 + align8(b.byteLength);
    }
  }
  if (objects !== null) frame.set(objects, at);
  return frame;
}

/**
 * The envelope of a frame, every section checked to fit and copied onto buffers of its own, with the
 * large tensors that came beside it taken as they are (`blobs`, in order: the frame must name exactly
 * these, Note [tensors beside the frame]); the caller checks the envelope itself (batch-reader.ts).
 * Anything else is a ProtocolError from `c`.
 */
export function decodeFrame(bytes: Uint8Array, c: Check, blobs: readonly ArrayBuffer[] = []): Envelope {
  checkByteOrder();
  const f: Check = c.at('frame');
  const n = bytes.byteLength;
  const words = new DataView(bytes.buffer, bytes.byteOffset, n);
  const truncated = (need: number, what: string): never =>
    f.fail(`${need} bytes for ${what}`, `${n} bytes (truncated)`, true);
  if (n < 8) truncated(8, 'the magic and the version');
  if (words.getInt32(0, true) !== MAGIC)
    f.fail("the magic 'BFLW'", `0x${words.getUint32(0, true).toString(16)}`, true);
  const v = words.getInt32(4, true);
  if (v !== PROTOCOL_VERSION)
    f.fail(
      `protocol version ${PROTOCOL_VERSION}${v > PROTOCOL_VERSION ? ' (the sender speaks a newer protocol)' : ''}`,
      v,
    );
  if (n < HEAD_BYTES) truncated(HEAD_BYTES, 'the head');
  const word = (i: number, name: string, lo: number) => f.int(words.getInt32(i * 4, true), name, lo, 2 ** 31);
  const gen = word(2, 'gen', 0);
  const from = word(3, 'from', -1);
  const count = word(4, 'count', 0);
  const ints = word(5, 'head length', 0);
  const payloadBytes = word(6, 'payload bytes', 0);
  const buffers = word(7, 'buffers', 0);
  const objectBytes = word(8, 'object bytes', 0);
  let at = HEAD_BYTES;
  const take = (length: number, what: string): Uint8Array<ArrayBuffer> => {
    if (at + length > n) truncated(at + length, what);
    const part = bytes.slice(at, at + length);
    at += align8(length);
    return part;
  };
  if (payloadBytes % 8 !== 0) f.fail('payload bytes: a multiple of 8', payloadBytes);
  const head = new Int32Array(take(ints * 4, `${ints} head integers`).buffer);
  // Copied onto a buffer of its own: the reader takes the payload's whole buffer.
  const payload = take(payloadBytes, `a payload of ${payloadBytes} bytes`).buffer;
  const list: ArrayBuffer[] = [];
  let blob = 0;
  for (let i = 0; i < buffers; i++) {
    if (at + 8 > n) truncated(at + 8, `the length of buffer ${i}`);
    const high = words.getUint32(at + 4, true);
    const length = words.getUint32(at, true) + (high % BESIDE) * 2 ** 32;
    at += 8;
    if (high < BESIDE) {
      list.push(take(length, `buffer ${i} of ${length} bytes`).buffer);
      continue;
    }
    const b = blobs[blob++];
    if (b === undefined) f.fail(`buffer ${i}: ${length} bytes sent beside the frame`, 'no such blob', true);
    if (b.byteLength !== length)
      f.fail(`buffer ${i}: a blob of ${length} bytes`, `${b.byteLength} bytes`, true);
    list.push(b);
  }
  if (blob < blobs.length)
    f.fail(`${blobs.length} buffers sent beside the frame`, `a frame that names ${blob} of them`, true);
  let objects: unknown = [];
  if (objectBytes > 0) {
    if (at + objectBytes > n) truncated(at + objectBytes, `${objectBytes} object bytes`);
    // A copy: msgpackr's binaries are views into what it reads, and a TCP wire reuses its frame.
    objects = unpack(bytes.slice(at, at + objectBytes), f.at('objects'));
    at += objectBytes;
  }
  if (at > n) truncated(at, 'the padding of the last section');
  if (at < n) f.fail(`${at} bytes`, `${n} (trailing bytes)`, true);
  if (!Array.isArray(objects)) f.fail('objects: a msgpack array', objects);
  return { v, gen, from, count, head, payload, buffers: list, objects };
}

const COLUMNS = ['op', 'dtype', 'inputStart', 'inputs', 'shapeStart', 'dims'] as const;

/** A host's init as bytes: 'BFLI', the protocol version, then msgpack (the packed graph's columns as bytes). */
export function encodeInit(init: HostInit): Uint8Array<ArrayBuffer> {
  checkByteOrder();
  const graph: Record<string, unknown> = { ...init.graph };
  for (const k of COLUMNS) {
    const col = init.graph[k];
    graph[k] = new Uint8Array(col.buffer, col.byteOffset, col.byteLength);
  }
  // A node process compiles the plan from its options (Note [shipped plan]).
  const { plan: _, ...rest } = init;
  const body = pack(marked({ ...rest, graph }, 0), 'init');
  const frame = new Uint8Array(8 + body.length);
  const words = new DataView(frame.buffer);
  words.setInt32(0, INIT_MAGIC, true);
  words.setInt32(4, PROTOCOL_VERSION, true);
  frame.set(body, 8);
  return frame;
}

/**
 * A host's init from bytes: the fields checked as far as plain data goes (unpackGraph checks the
 * graph's columns, compile the options); anything else is a ProtocolError naming `edge`.
 */
export function decodeInit(bytes: Uint8Array, edge: string): HostInit {
  checkByteOrder();
  const c: Check = new Check(edge, 'init');
  if (bytes.byteLength < 8) c.fail('at least 8 bytes', `${bytes.byteLength} bytes (truncated)`, true);
  const words = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (words.getInt32(0, true) !== INIT_MAGIC) c.fail("the magic 'BFLI'", words.getUint32(0, true));
  const v = words.getInt32(4, true);
  if (v !== PROTOCOL_VERSION) c.fail(`protocol version ${PROTOCOL_VERSION}`, v);
  const r = c.record(unpack(bytes.subarray(8), c), [
    'graph',
    'options',
    'gen',
    'pool',
    'ops',
    'limits',
    'kernels',
  ]);
  const cg: Check = c.at('graph');
  const g = cg.map(r.graph, 'a packed graph');
  const graph: Record<string, unknown> = { ...g };
  const widths = {
    op: Int32Array,
    dtype: Uint8Array,
    inputStart: Int32Array,
    inputs: Int32Array,
    shapeStart: Int32Array,
    dims: Int32Array,
  };
  for (const k of COLUMNS) {
    const col = g[k];
    if (!(col instanceof Uint8Array) || col.byteLength % widths[k].BYTES_PER_ELEMENT !== 0)
      cg.fail(`${k}: bytes of a ${widths[k].name}`, col);
    // Copied: msgpackr's binaries are views into the frame, at any alignment.
    graph[k] = new widths[k](col.slice().buffer);
  }
  c.map(r.options, 'options: plain data');
  c.int(r.gen, 'gen', 0, 2 ** 31);
  if (r.pool !== null) c.map(r.pool, 'pool: null or pool options');
  if (!Array.isArray(r.ops) || !r.ops.every((m) => typeof m === 'string'))
    c.fail('ops: an array of strings', r.ops);
  checkLimits(r.limits, c.at('limits'));
  if (typeof r.kernels !== 'string' || r.kernels.length === 0 || r.kernels.length > 64)
    c.fail('kernels: the name of kernels', r.kernels);
  return { ...(r as unknown as HostInit), graph: graph as unknown as PackedGraph };
}

/** A host's limits (HostLimits): a memory budget > 0 (Infinity: none), and credits or null. */
function checkLimits(v: unknown, c: Check): void {
  const r = c.record(v, ['memoryBytes', 'flow']);
  if (typeof r.memoryBytes !== 'number' || !(r.memoryBytes > 0))
    c.fail('memoryBytes: a number > 0', r.memoryBytes);
  if (r.flow === null) return;
  const cf: Check = c.at('flow');
  const f = cf.record(r.flow, ['windowBytes', 'minWindow']);
  if (typeof f.windowBytes !== 'number' || !(f.windowBytes > 0))
    cf.fail('windowBytes: a number > 0', f.windowBytes);
  cf.int(f.minWindow, 'minWindow', 1, 2 ** 31);
}

function pack(value: unknown, what: string): Uint8Array {
  try {
    // pack() returns a view into msgpackr's shared arena: callers copy it into their frame at once.
    return packr.pack(value);
  } catch (err) {
    throw new ProtocolError(
      `${what}: cannot be encoded as msgpack: ${(err as Error).message}`,
      { phase: 'send' },
      { cause: err },
    );
  }
}

function unpack(bytes: Uint8Array, c: Check): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    return c.fail('msgpack', `bytes msgpack cannot decode (${(err as Error).message})`, true);
  }
}

/** `value` with every -0 replaced by the extension that carries it (Note [byte framing]). */
export function marked(value: unknown, depth: number): unknown {
  if (typeof value === 'number') return Object.is(value, -0) ? NEGATIVE_ZERO : value;
  if (depth > 64 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((x) => marked(x, depth + 1));
  if (!isPlain(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(value))
    Object.defineProperty(out, k, {
      value: marked(x, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  return out;
}

function checkByteOrder(): void {
  if (!LITTLE_ENDIAN) throw new ProtocolError('frames are little-endian: this host is big-endian');
}
