import type { Tensor } from '../tensor/tensor.ts';
import { checkAttached, describe, Transfers } from './codec.ts';
import {
  type Envelope,
  type HostInput,
  type HostOutput,
  type MessageKind,
  PROTOCOL_VERSION,
} from './envelope.ts';
import { RING_AT, type RingWriter } from './ring.ts';

// Note [columnar envelope]
// Per-node placement sends millions of messages per step, each with a tensor of a few bytes. As one
// structured-cloned object per message, one transferred ArrayBuffer per tensor and a key check per
// message on receipt, a message cost about 3 us (sender and receiver, between two worker threads).
// So an envelope is columns: one Int32Array row per message (kind, step, microbatch, replica, node,
// consumer, slot, dtype, where its bytes are, byte length, rank, then the dimensions), the bytes of
// each small tensor copied into one payload buffer, large tensors still transferred whole (or, to a
// host on another thread, written into the link's ring: Note [tensor ring] in ring.ts), and the few
// messages that are not columns (step starts, failures, notices) as cloned objects. The receiver
// checks each column's range (a kind this sender may send, ids within the plan, byte lengths equal
// to the shapes, payload offsets in order, nothing left over) and copies each small tensor out into
// a fresh buffer it owns. With 1000 messages per envelope a message costs 0.16 us instead of 3.
// Copying a tensor into the payload beats transferring its buffer up to 16 KiB and no longer at
// 32 KiB: hence SMALL_TENSOR_BYTES (figures: docs/measurements.md).

/** Tensors of at most this many bytes are copied into the payload; larger ones are transferred. */
export const SMALL_TENSOR_BYTES = 16 * 1024;

/** Every message kind's code in a row (the compiler checks that none is missing). */
export const KIND_CODES = {
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
  update: 11,
  updated: 12,
  inputGrad: 13,
  credit: 14,
  output: 15,
} as const satisfies Record<MessageKind, number>;
export const KINDS = Object.keys(KIND_CODES) as MessageKind[];
const CODE: Record<MessageKind, number> = KIND_CODES;

/**
 * A row: ROW_FIELDS integers, then RANK dimensions. AT is a payload offset (>= 0), -1 - i for
 * buffers[i], or, for a message sent as an object, its index in `objects`. Unused fields are 0.
 */
export const ROW = {
  KIND: 0,
  STEP: 1,
  MB: 2,
  REPLICA: 3,
  NODE: 4,
  CONSUMER: 5,
  SLOT: 6,
  DTYPE: 7,
  AT: 8,
  BYTES: 9,
  RANK: 10,
} as const;
export const ROW_FIELDS = 11;
/** DTYPE values: a tensor's element type, a message sent as an object, or a row with no value (a credit). */
export const DTYPE_CODE = { none: -2, object: -1, float32: 0, float64: 1 } as const;

export const align8 = (n: number) => (n + 7) & ~7;

type WithTensor = Extract<HostInput<Tensor> | HostOutput<Tensor>, { tensor: Tensor }>;

/**
 * Builds one port's envelope, message by message. A message is checked and written when added (a
 * detached tensor throws a ProtocolError naming the edge, and nothing of the message is kept);
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
  /** Where large tensors go first, on a link whose ends share memory (Note [tensor ring]). */
  ring: RingWriter | null = null;

  constructor(
    readonly edge: string,
    private readonly smallTensorBytes = SMALL_TENSOR_BYTES,
  ) {}

  add(m: HostInput<Tensor> | HostOutput<Tensor>): void {
    switch (m.kind) {
      case 'feed':
      case 'activation':
      case 'inputGrad':
      case 'output':
        this.ids(this.tensor(m), m.step, m.mb, m.replica, m.node, 0, 0);
        break;
      case 'param':
      case 'grad':
        this.ids(this.tensor(m), m.step, 0, 0, m.node, 0, 0);
        break;
      case 'gradient':
        this.ids(this.tensor(m), m.step, m.mb, m.replica, m.node, m.consumer, m.slot);
        break;
      case 'loss':
        this.ids(this.scalar(m.kind, m.value), m.step, m.mb, m.replica, 0, 0, 0);
        break;
      case 'gradNorm':
        this.ids(this.scalar(m.kind, m.sumsq), m.step, 0, 0, m.node, 0, 0);
        break;
      case 'credit':
        // The stage in the node column: a row and nothing else.
        this.ids(this.row(m.kind, DTYPE_CODE.none, 0, 0, 0), m.step, m.mb, 0, m.stage, 0, 0);
        break;
      default:
        this.ids(this.row(m.kind, DTYPE_CODE.object, this.objects.length, 0, 0), 0, 0, 0, 0, 0, 0);
        this.objects.push(m);
    }
    this.count++;
  }

  /** The envelope of everything added since the last take, and what to transfer with it. */
  take(gen: number, from: number): { envelope: Envelope; transfer: ArrayBuffer[] } {
    const head = this.head.slice(0, this.ints);
    const payload = this.bytes.slice(0, this.used);
    const buffers = this.buffers.list;
    const ring = this.ring?.mark() ?? null;
    const envelope: Envelope = {
      v: PROTOCOL_VERSION,
      gen,
      from,
      count: this.count,
      head,
      payload,
      buffers,
      objects: this.objects,
      ...(ring !== null ? { ring } : {}),
    };
    this.copies += this.buffers.copies;
    this.count = 0;
    this.ints = 0;
    this.used = 0;
    this.buffers = new Transfers();
    this.objects = [];
    return { envelope, transfer: [head.buffer, payload, ...buffers] };
  }

  /** A tensor's row: its bytes copied into the payload or the ring, or its buffer added to the transfers. */
  private tensor(m: WithTensor): number {
    const t = m.tensor;
    const data = t.data;
    const shape = t.shape;
    const rank = shape.length;
    const f32 = t.dtype === 'float32';
    let size = 1;
    for (let d = 0; d < rank; d++) size *= shape[d]!;
    const need = size * (f32 ? 4 : 8);
    let at: number;
    if (need <= this.smallTensorBytes) {
      // The message is described only when it is refused: this is the per-message path.
      if (data.byteLength !== need) checkAttached(t, this.edge, describe(m));
      at = this.reserve(need);
      // Same-type typed array copies are byte copies: NaN payloads and -0 survive.
      if (f32) this.f32.set(data as Float32Array, at >> 2);
      else this.f64.set(data as Float64Array, at >> 3);
    } else {
      if (data.byteLength !== need) checkAttached(t, this.edge, describe(m));
      at = this.ring !== null && this.ring.place(data) >= 0 ? RING_AT : -1 - this.buffers.list.length;
      if (at !== RING_AT) this.buffers.buffer(t, this.edge, describe(m));
    }
    const i = this.row(m.kind, f32 ? DTYPE_CODE.float32 : DTYPE_CODE.float64, at, need, rank);
    for (let d = 0; d < rank; d++) this.head[i + ROW_FIELDS + d] = shape[d]!;
    return i;
  }

  private scalar(kind: MessageKind, value: number): number {
    const at = this.reserve(8);
    this.f64[at >> 3] = value;
    return this.row(kind, DTYPE_CODE.float64, at, 8, 0);
  }

  /** Room for a row with `rank` dimensions, its kind and where its bytes are; returns where it starts. */
  private row(kind: MessageKind, dtype: number, at: number, bytes: number, rank: number): number {
    const i = this.ints;
    const end = i + ROW_FIELDS + rank;
    if (end > this.head.length) {
      const head = new Int32Array(Math.max(this.head.length * 2, end));
      head.set(this.head.subarray(0, i));
      this.head = head;
    }
    const h = this.head;
    h[i + ROW.KIND] = CODE[kind];
    h[i + ROW.DTYPE] = dtype;
    h[i + ROW.AT] = at;
    h[i + ROW.BYTES] = bytes;
    h[i + ROW.RANK] = rank;
    this.ints = end;
    return i;
  }

  private ids(
    i: number,
    step: number,
    mb: number,
    replica: number,
    node: number,
    consumer: number,
    slot: number,
  ): void {
    const h = this.head;
    h[i + ROW.STEP] = step;
    h[i + ROW.MB] = mb;
    h[i + ROW.REPLICA] = replica;
    h[i + ROW.NODE] = node;
    h[i + ROW.CONSUMER] = consumer;
    h[i + ROW.SLOT] = slot;
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
