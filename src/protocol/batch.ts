// The data plane's envelope: every message of one event-loop turn on one port, in columns.
import { ProtocolError } from '../errors.ts';
import { Tensor } from '../tensor/tensor.ts';
import { Check } from './check.ts';
import { describe, OBJECT_MESSAGES, Transfers } from './codec.ts';
import {
  COORDINATOR,
  type Envelope,
  type HostInput,
  type HostOutput,
  type Limits,
  type MessageKind,
  PROTOCOL_VERSION,
} from './envelope.ts';

// Note [columnar envelope]
// Per-node placement sends millions of messages per step, each with a tensor of a few bytes. As one
// structured-cloned object per message, with one transferred ArrayBuffer per tensor and a key check
// per message on receipt, the port cost about 3 us per message on each side and most of the
// garbage. So an envelope is columns: one Int32Array row per message (kind, step, microbatch,
// replica, node, consumer, slot, dtype, where its bytes are, byte length, rank, then the dimensions),
// the bytes of every small tensor copied into one payload buffer, large tensors still transferred
// whole, and the few messages that are not columns (step starts, failures) as cloned objects. The
// receiver checks ranges column by column (kind allowed for this sender, ids within the plan, byte
// lengths equal to the shapes, payload offsets consecutive, nothing left over) and copies each small
// tensor out into a fresh buffer it owns. A copy of a few bytes is far cheaper than a transfer; above
// SMALL_TENSOR_BYTES a transfer wins. Measurements: README, design decisions.

/** Tensors of at most this many bytes are copied into the payload; larger ones are transferred. */
export const SMALL_TENSOR_BYTES = 16 * 1024;

/** Every message kind's code in a row (the compiler checks that no kind is missing). */
const CODES = {
  start: 0,
  feed: 1,
  activation: 2,
  param: 3,
  gradient: 4,
  loss: 5,
  grad: 6,
  gradNorm: 7,
  failed: 8,
  failpoint: 9,
  anomaly: 10,
} as const satisfies Record<MessageKind, number>;
const KINDS = Object.keys(CODES) as MessageKind[];
const CODE: Record<MessageKind, number> = CODES;
const kinds = (...names: MessageKind[]) => names.reduce((mask, k) => mask | (1 << CODE[k]), 0);
/** The messages each receiver accepts: from the coordinator, from another host, and the coordinator's. */
const FROM_COORDINATOR = kinds('start', 'feed');
const FROM_HOST = kinds('activation', 'param', 'gradient');
const TO_COORDINATOR = kinds('loss', 'grad', 'gradNorm', 'failed', 'failpoint', 'anomaly');

/** Row layout: ROW_FIELDS integers, then RANK dimensions. */
const KIND = 0;
const STEP = 1;
const MB = 2;
const REPLICA = 3;
const NODE = 4;
const CONSUMER = 5;
const SLOT = 6;
const DTYPE = 7;
/** A payload offset (>= 0), or -1 - i for buffers[i], or the index of an object row in `objects`. */
const AT = 8;
const BYTES = 9;
const RANK = 10;
export const ROW_FIELDS = 11;
export const ROW = { KIND, STEP, MB, REPLICA, NODE, CONSUMER, SLOT, DTYPE, AT, BYTES, RANK } as const;
const OBJECT = -1;
const F32 = 0;
const F64 = 1;
const MAX_RANK = 32;

const align8 = (n: number) => (n + 7) & ~7;

/**
 * Builds one port's envelope for this turn, message by message. A message is checked and written
 * when added (a detached tensor throws a ProtocolError naming the edge and nothing of it is kept);
 * `take` hands over the envelope and its transfer list and starts the next one.
 */
export class BatchWriter {
  /** Messages added since the last `take`. */
  count = 0;
  /** Large tensors copied before their transfer (not owning their buffer, or twice in one envelope). */
  copies = 0;
  private head = new Int32Array(1024);
  private ints = 0;
  private bytes = new ArrayBuffer(8192);
  private f32 = new Float32Array(this.bytes);
  private f64 = new Float64Array(this.bytes);
  private used = 0;
  private buffers = new Transfers();
  private objects: unknown[] = [];

  constructor(
    readonly edge: string,
    private readonly smallTensorBytes = SMALL_TENSOR_BYTES,
  ) {}

  add(m: HostInput<Tensor> | HostOutput<Tensor>): void {
    switch (m.kind) {
      case 'feed':
      case 'activation':
        this.tensorRow(m, m.step, m.mb, m.replica, m.node, 0, 0, m.tensor);
        break;
      case 'param':
      case 'grad':
        this.tensorRow(m, m.step, 0, 0, m.node, 0, 0, m.tensor);
        break;
      case 'gradient':
        this.tensorRow(m, m.step, m.mb, m.replica, m.node, m.consumer, m.slot, m.tensor);
        break;
      case 'loss':
        this.scalarRow(CODE.loss, m.step, m.mb, m.replica, 0, m.value);
        break;
      case 'gradNorm':
        this.scalarRow(CODE.gradNorm, m.step, 0, 0, m.node, m.sumsq);
        break;
      default: {
        const h = this.row(CODE[m.kind], 0, 0, 0, 0, 0, 0, OBJECT, this.objects.length, 0, 0);
        this.ints = h;
        this.objects.push(m);
      }
    }
    this.count++;
  }

  /** The envelope of everything added since the last take, and what to transfer with it. */
  take(gen: number, from: number): { envelope: Envelope; transfer: ArrayBuffer[] } {
    const head = this.head.slice(0, this.ints);
    const payload = this.bytes.slice(0, this.used);
    const buffers = this.buffers.list;
    const envelope: Envelope = {
      v: PROTOCOL_VERSION,
      gen,
      from,
      count: this.count,
      head,
      payload,
      buffers,
      objects: this.objects,
    };
    this.copies += this.buffers.copies;
    this.count = 0;
    this.ints = 0;
    this.used = 0;
    this.buffers = new Transfers();
    this.objects = [];
    return { envelope, transfer: [head.buffer, payload, ...buffers] };
  }

  private tensorRow(
    m: HostInput<Tensor> | HostOutput<Tensor>,
    step: number,
    mb: number,
    replica: number,
    node: number,
    consumer: number,
    slot: number,
    t: Tensor,
  ): void {
    const data = t.data;
    const shape = t.shape;
    const rank = shape.length;
    const f32 = t.dtype === 'float32';
    let size = 1;
    for (let d = 0; d < rank; d++) size *= shape[d]!;
    const need = size * (f32 ? 4 : 8);
    if (data.byteLength !== need) {
      throw new ProtocolError(
        `${this.edge}: ${describe(m)}: the tensor ${t.dtype}[${shape.join(',')}] has ${data.byteLength} bytes of ${need}: its buffer was detached (transferred earlier?)`,
        { edge: this.edge, phase: 'send', expected: need, found: data.byteLength },
      );
    }
    let at: number;
    if (need <= this.smallTensorBytes) {
      at = this.reserve(need);
      // Same-type typed array copies are byte copies: NaN payloads and -0 survive.
      if (f32) this.f32.set(data as Float32Array, at >> 2);
      else this.f64.set(data as Float64Array, at >> 3);
    } else {
      at = -1 - this.buffers.list.length;
      this.buffers.buffer(t, this.edge, describe(m));
    }
    const h = this.row(
      CODE[m.kind],
      step,
      mb,
      replica,
      node,
      consumer,
      slot,
      f32 ? F32 : F64,
      at,
      need,
      rank,
    );
    for (let d = 0; d < rank; d++) this.head[h + d] = shape[d]!;
    this.ints = h + rank;
  }

  private scalarRow(
    kind: number,
    step: number,
    mb: number,
    replica: number,
    node: number,
    value: number,
  ): void {
    const at = this.reserve(8);
    this.f64[at >> 3] = value;
    this.ints = this.row(kind, step, mb, replica, node, 0, 0, F64, at, 8, 0);
  }

  /** Writes a row's fixed fields (with room for `rank` dimensions after them); returns where the dimensions go. */
  private row(
    kind: number,
    step: number,
    mb: number,
    replica: number,
    node: number,
    consumer: number,
    slot: number,
    dtype: number,
    at: number,
    bytes: number,
    rank: number,
  ): number {
    const i = this.ints;
    if (i + ROW_FIELDS + rank > this.head.length) {
      const head = new Int32Array(Math.max(this.head.length * 2, i + ROW_FIELDS + rank));
      head.set(this.head.subarray(0, i));
      this.head = head;
    }
    const h = this.head;
    h[i + KIND] = kind;
    h[i + STEP] = step;
    h[i + MB] = mb;
    h[i + REPLICA] = replica;
    h[i + NODE] = node;
    h[i + CONSUMER] = consumer;
    h[i + SLOT] = slot;
    h[i + DTYPE] = dtype;
    h[i + AT] = at;
    h[i + BYTES] = bytes;
    h[i + RANK] = rank;
    return i + ROW_FIELDS;
  }

  /** Room for `n` bytes in the payload, at an offset that is a multiple of 8. */
  private reserve(n: number): number {
    const at = this.used;
    const end = at + align8(n);
    if (end > this.bytes.byteLength) {
      const bytes = new ArrayBuffer(Math.max(this.bytes.byteLength * 2, end));
      new Uint8Array(bytes).set(new Uint8Array(this.bytes, 0, at));
      this.bytes = bytes;
      this.f32 = new Float32Array(bytes);
      this.f64 = new Float64Array(bytes);
    }
    this.used = end;
    return at;
  }
}

/** Messages as one envelope (tests, and anything that sends a batch outside a link). */
export function encodeEnvelope(
  messages: readonly (HostInput<Tensor> | HostOutput<Tensor>)[],
  gen: number,
  from: number,
  edge: string,
  smallTensorBytes = SMALL_TENSOR_BYTES,
): { envelope: Envelope; transfer: ArrayBuffer[] } {
  const w = new BatchWriter(edge, smallTensorBytes);
  for (const m of messages) w.add(m);
  return w.take(gen, from);
}

/** Checks an envelope a host received and rebuilds its messages. Anything else is a ProtocolError naming the edge. */
export function decodeHostInputs(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
): { gen: number; messages: HostInput<Tensor>[] } {
  const allowed = from === COORDINATOR ? FROM_COORDINATOR : FROM_HOST;
  return decodeEnvelope(raw, edge, from, limits, allowed) as { gen: number; messages: HostInput<Tensor>[] };
}

/** Checks an envelope the coordinator received from a host and rebuilds its messages. */
export function decodeHostOutputs(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
): { gen: number; messages: HostOutput<Tensor>[] } {
  return decodeEnvelope(raw, edge, from, limits, TO_COORDINATOR) as {
    gen: number;
    messages: HostOutput<Tensor>[];
  };
}

const ENVELOPE_KEYS = ['v', 'gen', 'from', 'count', 'head', 'payload', 'buffers', 'objects'];
const EMPTY = new ArrayBuffer(0);
const tag = (v: unknown) => Object.prototype.toString.call(v);

function decodeEnvelope(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
  allowed: number,
): { gen: number; messages: unknown[] } {
  const c: Check = new Check(edge, 'envelope');
  const e = c.record(raw, ENVELOPE_KEYS) as unknown as Envelope;
  if (e.v !== PROTOCOL_VERSION) {
    const newer = Number.isInteger(e.v) && e.v > PROTOCOL_VERSION;
    c.fail(
      `protocol version ${PROTOCOL_VERSION}${newer ? ' (the sender speaks a newer protocol)' : ''}`,
      e.v,
    );
  }
  const gen = c.int(e.gen, 'gen', 0, 2 ** 31);
  if (e.from !== from) c.fail(`from = ${from}`, e.from);
  const head = e.head;
  if (tag(head) !== '[object Int32Array]' || tag(head.buffer) !== '[object ArrayBuffer]')
    c.fail('head: an Int32Array', head);
  const count = c.int(e.count, 'count', 0, Math.floor(head.length / ROW_FIELDS) + 1);
  const payload = e.payload;
  if (tag(payload) !== '[object ArrayBuffer]' || payload.byteLength % 8 !== 0)
    c.fail('payload: an ArrayBuffer of a multiple of 8 bytes', payload);
  const { buffers, objects } = e;
  if (!Array.isArray(buffers)) c.fail('buffers: an array of ArrayBuffers', buffers);
  if (!Array.isArray(objects)) c.fail('objects: an array', objects);
  if (buffers.length > 1 && new Set(buffers).size !== buffers.length)
    c.fail('buffers: each buffer once', 'a buffer twice', true);
  const f32 = new Float32Array(payload.byteLength > 0 ? payload : EMPTY);
  const f64 = new Float64Array(payload.byteLength > 0 ? payload : EMPTY);
  const messages = new Array<unknown>(count);
  let i = 0;
  let at = 0;
  let big = 0;
  let obj = 0;
  let k = 0;
  let row = 0;
  // Fails naming the message by its place and kind.
  const bad: Bad = (expected, found, described = false) =>
    c.at(`message ${k}: ${KINDS[head[row + KIND]!] ?? '?'}`).fail(expected, found, described);
  for (; k < count; k++) {
    row = i;
    if (i + ROW_FIELDS > head.length)
      bad(`a row of ${ROW_FIELDS} integers`, `${head.length - i} (truncated)`, true);
    const code = head[i + KIND]!;
    const kind = KINDS[code];
    if (kind === undefined || (allowed & (1 << code)) === 0) {
      const names = KINDS.filter((_, j) => (allowed & (1 << j)) !== 0);
      return c.at(`message ${k}`).fail(`kind: one of ${names.join(', ')}`, kind ?? code);
    }
    const step = head[i + STEP]!;
    if (step < 0) bad(`step: an integer in [0, ${2 ** 31})`, step);
    const dtype = head[i + DTYPE]!;
    const loc = head[i + AT]!;
    const bytes = head[i + BYTES]!;
    const rank = head[i + RANK]!;
    if (rank < 0 || rank > MAX_RANK) bad(`rank: an integer in [0, ${MAX_RANK}]`, rank);
    if (i + ROW_FIELDS + rank > head.length)
      bad(`${rank} dimensions after the row`, `${head.length - i - ROW_FIELDS} (truncated)`, true);
    const dims = i + ROW_FIELDS;
    i = dims + rank;
    if (dtype === OBJECT) {
      if (!(kind in OBJECT_MESSAGES)) bad('dtype: 0 (float32) or 1 (float64)', dtype);
      if (loc !== obj || obj >= objects.length)
        bad(`objects[${obj}]`, `objects[${loc}] of ${objects.length}`, true);
      const o = objects[obj++];
      const co = c.at(`message ${k}`);
      if (!isRecord(o) || o.kind !== kind) co.fail(`a ${kind} message`, o);
      messages[k] = OBJECT_MESSAGES[kind as keyof typeof OBJECT_MESSAGES](o, co.at(kind), limits);
      continue;
    }
    if (dtype !== F32 && dtype !== F64) bad('dtype: 0 (float32) or 1 (float64)', dtype);
    const width = dtype === F32 ? 4 : 8;
    let size = 1;
    for (let d = 0; d < rank; d++) {
      const n = head[dims + d]!;
      if (n < 0) bad(`shape[${d}]: an integer in [0, ${2 ** 31})`, n);
      size *= n;
    }
    if (bytes !== size * width) {
      const shape = Array.from(head.subarray(dims, dims + rank)).join(',');
      bad(
        `a ${dtype === F32 ? 'float32' : 'float64'}[${shape}] tensor of ${size * width} bytes`,
        `${bytes} bytes`,
        true,
      );
    }
    let data: Float32Array<ArrayBuffer> | Float64Array<ArrayBuffer>;
    if (loc >= 0) {
      if (loc !== at) bad(`payload offset ${at}`, loc);
      if (at + bytes > payload.byteLength)
        bad(
          `${bytes} bytes at payload offset ${at}`,
          `a payload of ${payload.byteLength} bytes (truncated)`,
          true,
        );
      if (kind === 'loss' || kind === 'gradNorm') {
        if (dtype !== F64 || rank !== 0) bad('a float64 scalar', `rank ${rank}, dtype ${dtype}`, true);
        const value = f64[at >> 3]!;
        at += 8;
        const mb = kind === 'loss' ? checkMb(head, dims, bad) : 0;
        messages[k] =
          kind === 'loss'
            ? { kind, step, mb, replica: checkReplica(head, dims, limits, bad), value }
            : { kind, step, node: checkNode(head, dims, NODE, 'node', limits, bad), sumsq: value };
        continue;
      }
      // A fresh buffer per tensor (Note [owned storage]): slice copies bytes, bit for bit.
      data = dtype === F32 ? f32.slice(at >> 2, (at + bytes) >> 2) : f64.slice(at >> 3, (at + bytes) >> 3);
      at += align8(bytes);
    } else {
      if (loc !== -1 - big || big >= buffers.length)
        bad(`buffers[${big}]`, `buffers[${-1 - loc}] of ${buffers.length}`, true);
      const buffer: unknown = buffers[big++];
      if (tag(buffer) !== '[object ArrayBuffer]') bad('an ArrayBuffer', buffer);
      const length = (buffer as ArrayBuffer).byteLength;
      if (length !== bytes) bad(`a tensor of ${bytes} bytes`, `${length} bytes`, true);
      data =
        dtype === F32 ? new Float32Array(buffer as ArrayBuffer) : new Float64Array(buffer as ArrayBuffer);
    }
    if (kind === 'loss' || kind === 'gradNorm')
      bad('a float64 scalar in the payload', 'a transferred buffer', true);
    const shape = new Array<number>(rank);
    for (let d = 0; d < rank; d++) shape[d] = head[dims + d]!;
    const tensor = new Tensor(dtype === F32 ? 'float32' : 'float64', shape, data);
    const node = checkNode(head, dims, NODE, 'node', limits, bad);
    if (kind === 'param' || kind === 'grad') messages[k] = { kind, step, node, tensor };
    else {
      const mb = checkMb(head, dims, bad);
      const replica = checkReplica(head, dims, limits, bad);
      if (kind === 'gradient') {
        const consumer = checkNode(head, dims, CONSUMER, 'consumer', limits, bad);
        const slot = head[dims - ROW_FIELDS + SLOT]!;
        if (slot < 0 || slot >= 2 ** 16) bad(`slot: an integer in [0, ${2 ** 16})`, slot);
        messages[k] = { kind, step, mb, replica, node, consumer, slot, tensor };
      } else messages[k] = { kind, step, mb, replica, node, tensor };
    }
  }
  if (i !== head.length)
    c.fail(`${i} integers in head for ${count} messages`, `${head.length} (trailing integers)`, true);
  if (at !== payload.byteLength)
    c.fail(`${at} payload bytes for ${count} messages`, `${payload.byteLength} (trailing bytes)`, true);
  if (big !== buffers.length) c.fail(`${big} buffers`, `${buffers.length} (trailing buffers)`, true);
  if (obj !== objects.length) c.fail(`${obj} objects`, `${objects.length} (trailing objects)`, true);
  return { gen, messages };
}

type Bad = (expected: string, found: unknown, described?: boolean) => never;

/** `dims` is where the row's dimensions start: its fixed fields are just before. */
function checkNode(head: Int32Array, dims: number, field: number, name: string, l: Limits, bad: Bad): number {
  const v = head[dims - ROW_FIELDS + field]!;
  if (v < 0 || v >= l.nodes) bad(`${name}: an integer in [0, ${l.nodes})`, v);
  return v;
}

function checkMb(head: Int32Array, dims: number, bad: Bad): number {
  const v = head[dims - ROW_FIELDS + MB]!;
  if (v < 0 || v >= 2 ** 24) bad(`mb: an integer in [0, ${2 ** 24})`, v);
  return v;
}

function checkReplica(head: Int32Array, dims: number, l: Limits, bad: Bad): number {
  const v = head[dims - ROW_FIELDS + REPLICA]!;
  if (v < 0 || v >= l.replicas) bad(`replica: an integer in [0, ${l.replicas})`, v);
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
