// Checks a columnar envelope (Note [columnar envelope] in batch.ts) and rebuilds its messages.
import { type Storage, Tensor } from '../tensor/tensor.ts';
import { align8, DTYPE_CODE, KIND_CODES, KINDS, ROW, ROW_FIELDS } from './batch.ts';
import { Check } from './check.ts';
import { OBJECT_MESSAGES } from './codec.ts';
import {
  COORDINATOR,
  type Envelope,
  type HostInput,
  type HostOutput,
  type Limits,
  type MessageKind,
  PROTOCOL_VERSION,
} from './envelope.ts';
import { decodeFrame, FrameWithBlobs } from './frame.ts';
import { RING_AT, type RingMark, type RingReader } from './ring.ts';

const kinds = (...names: MessageKind[]) => names.reduce((mask, k) => mask | (1 << KIND_CODES[k]), 0);
/** What each receiver accepts: from the coordinator, from another host, and what the coordinator does. */
const FROM_COORDINATOR = kinds('start', 'feed', 'update');
const FROM_HOST = kinds('activation', 'param', 'gradient', 'credit', 'loss');
const TO_COORDINATOR = kinds(
  'loss',
  'grad',
  'inputGrad',
  'output',
  'gradNorm',
  'failed',
  'failpoint',
  'anomaly',
  'updated',
);

/**
 * Checks an envelope a host received (as a value, or as a frame of bytes: Note [byte framing]) and
 * rebuilds its messages. Anything else is a ProtocolError naming the edge.
 */
export function decodeHostInputs(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
  ring: RingReader | null = null,
): { gen: number; messages: HostInput<Tensor>[] } {
  const allowed = from === COORDINATOR ? FROM_COORDINATOR : FROM_HOST;
  return decode(raw, edge, from, limits, allowed, ring) as { gen: number; messages: HostInput<Tensor>[] };
}

/** Checks an envelope the coordinator received from a host and rebuilds its messages. */
export function decodeHostOutputs(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
): { gen: number; messages: HostOutput<Tensor>[] } {
  return decode(raw, edge, from, limits, TO_COORDINATOR, null) as {
    gen: number;
    messages: HostOutput<Tensor>[];
  };
}

const ENVELOPE_KEYS = ['v', 'gen', 'from', 'count', 'head', 'payload', 'buffers', 'objects'];
const MAX_RANK = 32;
const tag = (v: unknown) => Object.prototype.toString.call(v);

function decode(
  raw: unknown,
  edge: string,
  from: number,
  limits: Limits,
  allowed: number,
  ring: RingReader | null,
): { gen: number; messages: unknown[] } {
  const c: Check = new Check(edge, 'envelope');
  const value =
    tag(raw) === '[object Uint8Array]'
      ? decodeFrame(raw as Uint8Array, c)
      : raw instanceof FrameWithBlobs
        ? decodeFrame(raw.frame, c, raw.blobs)
        : raw;
  const e = c.record(value, ENVELOPE_KEYS, ['ring']) as unknown as Envelope;
  if (e.v !== PROTOCOL_VERSION) {
    const newer = Number.isInteger(e.v) && e.v > PROTOCOL_VERSION;
    c.fail(
      `protocol version ${PROTOCOL_VERSION}${newer ? ' (the sender speaks a newer protocol)' : ''}`,
      e.v,
    );
  }
  const gen = c.int(e.gen, 'gen', 0, 2 ** 31);
  if (e.from !== from) c.fail(`from = ${from}`, e.from);
  const { head, payload, buffers, objects } = e;
  if (tag(head) !== '[object Int32Array]' || tag(head.buffer) !== '[object ArrayBuffer]')
    c.fail('head: an Int32Array', head);
  const count = c.int(e.count, 'count', 0, Math.floor(head.length / ROW_FIELDS) + 1);
  if (tag(payload) !== '[object ArrayBuffer]' || payload.byteLength % 8 !== 0)
    c.fail('payload: an ArrayBuffer of a multiple of 8 bytes', payload);
  if (!Array.isArray(buffers)) c.fail('buffers: an array of ArrayBuffers', buffers);
  if (!Array.isArray(objects)) c.fail('objects: an array', objects);
  if (buffers.length > 1 && new Set(buffers).size !== buffers.length)
    c.fail('buffers: each buffer once', 'a buffer twice', true);
  let mark: RingMark | null = null;
  if (e.ring !== undefined) {
    if (ring === null) c.fail('no ring (this link sends every tensor in the envelope)', 'a ring mark', true);
    mark = ring.adopt(e.ring, c.at('ring'));
  }
  try {
    const rows = new Rows(c, e, limits, ring, mark);
    const messages = new Array<unknown>(count);
    for (let k = 0; k < count; k++) messages[k] = rows.next(k, allowed);
    rows.end(count);
    return { gen, messages };
  } finally {
    // Even for an envelope refused halfway: the sender's room comes back (Note [tensor ring]).
    if (mark !== null) ring!.release(mark);
  }
}

/** A cursor over an envelope's rows, payload, buffers and objects; every read is range-checked. */
class Rows {
  private readonly head: Int32Array;
  private readonly payload: ArrayBuffer;
  private readonly f32: Float32Array<ArrayBuffer>;
  private readonly f64: Float64Array<ArrayBuffer>;
  private readonly buffers: readonly unknown[];
  private readonly objects: readonly unknown[];
  /** Where the next row starts, the next payload offset, buffer and object. */
  private i = 0;
  private at = 0;
  private big = 0;
  private obj = 0;
  private ringed = 0;
  /** The current message, for errors. */
  private k = 0;
  private row = 0;

  constructor(
    private readonly c: Check,
    e: Envelope,
    private readonly limits: Limits,
    private readonly ring: RingReader | null,
    private readonly mark: RingMark | null,
  ) {
    this.head = e.head;
    this.payload = e.payload;
    this.f32 = new Float32Array(e.payload);
    this.f64 = new Float64Array(e.payload);
    this.buffers = e.buffers;
    this.objects = e.objects;
  }

  /** Fails naming the message by its place and kind. */
  private fail(expected: string, found: unknown, described = false): never {
    const kind = KINDS[this.head[this.row + ROW.KIND]!] ?? '?';
    return this.c.at(`message ${this.k}: ${kind}`).fail(expected, found, described);
  }

  /** Field `field` of the current row, checked to be in [lo, hi). */
  private int(field: number, name: string, lo: number, hi: number): number {
    const v = this.head[this.row + field]!;
    if (v < lo || v >= hi) this.fail(`${name}: an integer in [${lo}, ${hi})`, v);
    return v;
  }

  next(k: number, allowed: number): unknown {
    const { head } = this;
    this.k = k;
    const i = (this.row = this.i);
    if (i + ROW_FIELDS > head.length)
      this.fail(`a row of ${ROW_FIELDS} integers`, `${head.length - i} (truncated)`, true);
    const code = head[i + ROW.KIND]!;
    const kind = KINDS[code];
    if (kind === undefined || (allowed & (1 << code)) === 0) {
      const names = KINDS.filter((_, j) => (allowed & (1 << j)) !== 0);
      return this.c.at(`message ${k}`).fail(`kind: one of ${names.join(', ')}`, kind ?? code);
    }
    const rank = this.int(ROW.RANK, 'rank', 0, MAX_RANK + 1);
    if (i + ROW_FIELDS + rank > head.length)
      this.fail(`${rank} dimensions after the row`, `${head.length - i - ROW_FIELDS} (truncated)`, true);
    this.i = i + ROW_FIELDS + rank;
    const step = this.int(ROW.STEP, 'step', 0, 2 ** 31);
    const dtype = head[i + ROW.DTYPE]!;
    if (dtype === DTYPE_CODE.object) return this.object(kind);
    if (kind === 'credit') return this.credit(step, dtype, rank);
    if (dtype !== DTYPE_CODE.float32 && dtype !== DTYPE_CODE.float64)
      this.fail('dtype: 0 (float32) or 1 (float64)', dtype);
    const { nodes, replicas } = this.limits;
    switch (kind) {
      case 'loss':
        return {
          kind,
          step,
          mb: this.mb(),
          replica: this.int(ROW.REPLICA, 'replica', 0, replicas),
          value: this.scalar(),
        };
      case 'gradNorm':
        return { kind, step, node: this.int(ROW.NODE, 'node', 0, nodes), sumsq: this.scalar() };
      case 'param':
      case 'grad':
        return { kind, step, node: this.int(ROW.NODE, 'node', 0, nodes), tensor: this.tensor(dtype, rank) };
      case 'gradient': {
        const mb = this.mb();
        const replica = this.int(ROW.REPLICA, 'replica', 0, replicas);
        const node = this.int(ROW.NODE, 'node', 0, nodes);
        const consumer = this.int(ROW.CONSUMER, 'consumer', 0, nodes);
        const slot = this.int(ROW.SLOT, 'slot', 0, 2 ** 16);
        return { kind, step, mb, replica, node, consumer, slot, tensor: this.tensor(dtype, rank) };
      }
      case 'feed':
      case 'activation':
      case 'inputGrad':
      case 'output': {
        const mb = this.mb();
        const replica = this.int(ROW.REPLICA, 'replica', 0, replicas);
        return {
          kind,
          step,
          mb,
          replica,
          node: this.int(ROW.NODE, 'node', 0, nodes),
          tensor: this.tensor(dtype, rank),
        };
      }
      default:
        return this.fail('dtype: -1 (an object message)', dtype);
    }
  }

  /** A credit: a row with no value, its stage in the node column. */
  private credit(step: number, dtype: number, rank: number): unknown {
    const { head, row } = this;
    if (dtype !== DTYPE_CODE.none || rank !== 0 || head[row + ROW.BYTES] !== 0 || head[row + ROW.AT] !== 0)
      this.fail('a row with no value (dtype -2, rank 0, no bytes)', `dtype ${dtype}, rank ${rank}`, true);
    return { kind: 'credit', step, mb: this.mb(), stage: this.int(ROW.NODE, 'stage', 0, this.limits.nodes) };
  }

  private mb(): number {
    return this.int(ROW.MB, 'mb', 0, 2 ** 24);
  }

  /** The next object, checked field by field as the row's kind. */
  private object(kind: MessageKind): unknown {
    if (!(kind in OBJECT_MESSAGES)) this.fail('dtype: 0 (float32) or 1 (float64)', DTYPE_CODE.object);
    const { obj, objects } = this;
    if (this.head[this.row + ROW.AT] !== obj || obj >= objects.length)
      this.fail(`objects[${obj}]`, `objects[${this.head[this.row + ROW.AT]}] of ${objects.length}`, true);
    const o = objects[this.obj++];
    const c = this.c.at(`message ${this.k}`);
    if (typeof o !== 'object' || o === null || (o as { kind?: unknown }).kind !== kind)
      c.fail(`a ${kind} message`, o);
    return OBJECT_MESSAGES[kind as keyof typeof OBJECT_MESSAGES](
      o as Record<string, unknown>,
      c.at(kind),
      this.limits,
    );
  }

  /** The row's place in the payload: checked to be the next one, and inside it. */
  private inPayload(bytes: number): number {
    const { at, payload } = this;
    const loc = this.head[this.row + ROW.AT]!;
    if (loc !== at) this.fail(`payload offset ${at}`, loc);
    if (at + bytes > payload.byteLength)
      this.fail(
        `${bytes} bytes at payload offset ${at}`,
        `a payload of ${payload.byteLength} bytes (truncated)`,
        true,
      );
    this.at = at + align8(bytes);
    return at;
  }

  private scalar(): number {
    const { head, row } = this;
    if (
      head[row + ROW.DTYPE] !== DTYPE_CODE.float64 ||
      head[row + ROW.RANK] !== 0 ||
      head[row + ROW.BYTES] !== 8
    )
      this.fail(
        'a float64 scalar of 8 bytes',
        `dtype ${head[row + ROW.DTYPE]}, rank ${head[row + ROW.RANK]}`,
        true,
      );
    return this.f64[this.inPayload(8) >> 3]!;
  }

  /** The row's tensor, its byte length checked against its shape, in a fresh buffer of its own. */
  private tensor(dtype: number, rank: number): Tensor {
    const { head, row } = this;
    const dims = row + ROW_FIELDS;
    const f32 = dtype === DTYPE_CODE.float32;
    const shape = new Array<number>(rank);
    let size = 1;
    for (let d = 0; d < rank; d++) {
      const n = head[dims + d]!;
      if (n < 0) this.fail(`shape[${d}]: an integer in [0, ${2 ** 31})`, n);
      shape[d] = n;
      size *= n;
    }
    const bytes = head[row + ROW.BYTES]!;
    if (bytes !== size * (f32 ? 4 : 8))
      this.fail(
        `a ${f32 ? 'float32' : 'float64'}[${shape.join(',')}] tensor of ${size * (f32 ? 4 : 8)} bytes`,
        `${bytes} bytes`,
        true,
      );
    let data: Storage;
    if (head[row + ROW.AT] === RING_AT) {
      const { mark, ringed } = this;
      if (mark === null || ringed >= mark.at.length)
        this.fail(`ring.at[${ringed}]`, `ring.at of ${mark?.at.length ?? 0}`, true);
      this.ringed++;
      data = this.ring!.take(
        mark.at[ringed],
        f32 ? 'float32' : 'float64',
        size,
        this.c.at(`message ${this.k}`),
      );
    } else if (head[row + ROW.AT]! >= 0) {
      // Note [owned storage]: slice copies into a fresh buffer, byte for byte.
      const at = this.inPayload(bytes);
      data = f32 ? this.f32.slice(at >> 2, (at + bytes) >> 2) : this.f64.slice(at >> 3, (at + bytes) >> 3);
    } else {
      const { big, buffers } = this;
      if (head[row + ROW.AT] !== -1 - big || big >= buffers.length)
        this.fail(`buffers[${big}]`, `buffers[${-1 - head[row + ROW.AT]!}] of ${buffers.length}`, true);
      const buffer = buffers[this.big++];
      if (tag(buffer) !== '[object ArrayBuffer]') this.fail('an ArrayBuffer', buffer);
      const length = (buffer as ArrayBuffer).byteLength;
      if (length !== bytes) this.fail(`a tensor of ${bytes} bytes`, `${length} bytes`, true);
      data = f32 ? new Float32Array(buffer as ArrayBuffer) : new Float64Array(buffer as ArrayBuffer);
    }
    return new Tensor(f32 ? 'float32' : 'float64', shape, data);
  }

  /** Nothing left over: every integer, payload byte, buffer and object belongs to a message. */
  end(count: number): void {
    const { c, head, payload, buffers, objects } = this;
    if (this.i !== head.length)
      c.fail(`${this.i} integers in head for ${count} messages`, `${head.length} (trailing integers)`, true);
    if (this.at !== payload.byteLength)
      c.fail(
        `${this.at} payload bytes for ${count} messages`,
        `${payload.byteLength} (trailing bytes)`,
        true,
      );
    if (this.big !== buffers.length)
      c.fail(`${this.big} buffers`, `${buffers.length} (trailing buffers)`, true);
    if (this.obj !== objects.length)
      c.fail(`${this.obj} objects`, `${objects.length} (trailing objects)`, true);
    const ringed = this.mark?.at.length ?? 0;
    if (this.ringed !== ringed) c.fail(`${this.ringed} ring offsets`, `${ringed} (trailing offsets)`, true);
  }
}
