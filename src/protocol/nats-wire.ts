// A wire over NATS subjects: byte frames (Note [byte framing]) cut into chunks below the server's
// max_payload and put back together, in order, on the other side. For links between nodes that
// cannot reach each other directly; bulk data belongs on direct connections where they can.
import type { NatsConnection, QueuedIterator, Status, Subscription } from '@nats-io/transport-node';
import { InputError, ProtocolError } from '../errors.ts';
import { edgeName } from './codec.ts';
import { COORDINATOR } from './envelope.ts';
import { encodeFrame } from './frame.ts';
import type { Wire } from './wire.ts';

// Note [NATS wire order]
// NATS hands a subscriber the messages of one publishing connection on one subject in the order they
// were published, and promises nothing else: no order across subjects or publishers, and no resend of
// what a lost connection or a slow-consumer cut dropped, nor of what was published before anyone
// subscribed. So each directed link has a subject of its own, `backflow.<cluster>.data.<from>.<to>`,
// published by one wire on one connection, and every chunk on it carries its number on the link
// (from 0): a chunk lost, reordered, or published by a second sender on the same subject arrives with
// the wrong number and fails the wire with a ProtocolError, never a corrupted frame. A chunk of
// another run on the same subjects (a stale process with another cluster id) is dropped and counted.
// Each end subscribes before `openNatsWire` resolves (a flush: the server has the subscription); the
// rendezvous must open both ends before either sends, or the first chunks are lost and the next one
// fails the wire. A lost connection (status 'disconnect', 'close', a server 'error') fails the wire
// too: what was in flight is gone.
//
// Note [NATS chunks]
// A chunk is a head of 5 little-endian words (magic 'BFNC', cluster id, chunk number, kind: data or
// close, the whole frame's bytes) and then up to max_payload - 20 bytes of the frame. The server's
// max_payload is read from the connection's server info at each post (1 MiB by default). The receiver
// allocates a frame when its first chunk arrives, only if the declared size is within
// `maxFrameBytes`, then checks that every chunk declares the same size and none runs past it. A close
// chunk closes the other end too, as a MessagePort does.

const MAGIC = 0x434e4642; // 'BFNC' as bytes
const HEAD_BYTES = 20;
const DATA = 0;
const CLOSE = 1;
const DEFAULT_MAX_PAYLOAD = 1 << 20;
/** Frames larger than this are refused by default, at both ends. */
export const MAX_FRAME_BYTES = 2 ** 30;

export interface NatsWireOptions {
  /** The cluster's name in every subject: letters, digits, '-' and '_' only (no dots, no wildcards). */
  cluster: string;
  /** This run's id (an unsigned 32-bit integer) in every chunk; chunks with another are dropped. */
  clusterId: number;
  /** This end (a worker, or COORDINATOR) and the other one. */
  self: number;
  peer: number;
  /** The largest frame sent or accepted, in bytes (MAX_FRAME_BYTES by default, below 2^32). */
  maxFrameBytes?: number;
}

/** The data subject of the link from `from` to `to` (Note [NATS wire order]). */
export function dataSubject(cluster: string, from: number, to: number): string {
  return `backflow.${subjectToken(cluster, 'cluster')}.data.${endToken(from)}.${endToken(to)}`;
}

/** `name` as one subject token, or an InputError: a dot or a wildcard would reach other subjects. */
export function subjectToken(name: string, what: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name))
    throw new InputError(
      `${what}: expected 1 to 64 letters, digits, '-' or '_' (one NATS subject token), found ${JSON.stringify(name)}`,
      { expected: 'a NATS subject token', found: name },
    );
  return name;
}

function endToken(w: number): string {
  if (w === COORDINATOR) return 'coordinator';
  if (!Number.isInteger(w) || w < 0)
    throw new InputError(`a link end must be a worker or the coordinator, found ${w}`);
  return String(w);
}

/**
 * Opens one end of a link over `nc` (which the caller owns and closes, after its wires): it subscribes
 * to what the peer publishes and resolves once the server has the subscription (Note [NATS wire order]).
 */
export async function openNatsWire(nc: NatsConnection, options: NatsWireOptions): Promise<NatsWire> {
  const wire = new NatsWire(nc, options);
  try {
    await nc.flush();
  } catch (err) {
    wire.close();
    throw err;
  }
  return wire;
}

/** The chunks of one frame, numbered from `seq` (Note [NATS chunks]); a close chunk for an empty frame. */
export function splitFrame(
  frame: Uint8Array,
  clusterId: number,
  seq: number,
  maxPayload: number,
): Uint8Array<ArrayBuffer>[] {
  const step = maxPayload - HEAD_BYTES;
  if (step < 1) throw new ProtocolError(`a max_payload of ${maxPayload} bytes leaves no room for a chunk`);
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let at = 0;
  do {
    const body = frame.subarray(at, at + step);
    const chunk = new Uint8Array(HEAD_BYTES + body.length);
    const head = new DataView(chunk.buffer);
    const words = [MAGIC, clusterId, (seq + chunks.length) >>> 0, frame.length === 0 ? CLOSE : DATA];
    for (const [i, w] of [...words, frame.length].entries()) head.setUint32(i * 4, w, true);
    chunk.set(body, HEAD_BYTES);
    chunks.push(chunk);
    at += body.length;
  } while (at < frame.length);
  return chunks;
}

export class NatsWire implements Wire {
  readonly name: string;
  readonly subjectOut: string;
  readonly subjectIn: string;
  /** Chunks of another run (another cluster id) dropped on receipt. */
  dropped = 0;
  private readonly edgeIn: string;
  private readonly clusterId: number;
  private readonly maxFrameBytes: number;
  private readonly sub: Subscription;
  private readonly events: AsyncIterable<Status>;
  private seqOut = 0;
  private seqIn = 0;
  /** The frame being put together, and how many of its bytes arrived. */
  private frame: Uint8Array<ArrayBuffer> | null = null;
  private filled = 0;
  private inbox: Uint8Array<ArrayBuffer>[] = [];
  private failure: ProtocolError | null = null;
  private closed = false;
  private receive: ((raw: unknown) => void) | null = null;
  private error: ((cause: Error) => void) | null = null;

  constructor(
    private readonly nc: NatsConnection,
    options: NatsWireOptions,
  ) {
    const { cluster, clusterId, self, peer, maxFrameBytes = MAX_FRAME_BYTES } = options;
    if (!Number.isInteger(clusterId) || clusterId < 0 || clusterId >= 2 ** 32)
      throw new InputError(`clusterId: expected an unsigned 32-bit integer, found ${clusterId}`);
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes >= 2 ** 32)
      throw new InputError(`maxFrameBytes: expected an integer in [1, 2^32), found ${maxFrameBytes}`);
    this.clusterId = clusterId;
    this.maxFrameBytes = maxFrameBytes;
    this.subjectOut = dataSubject(cluster, self, peer);
    this.subjectIn = dataSubject(cluster, peer, self);
    this.edgeIn = edgeName(peer, self);
    this.name = `nats ${this.subjectOut} (and back)`;
    this.sub = nc.subscribe(this.subjectIn, {
      callback: (err, msg) =>
        err === null
          ? this.arrive(msg.data)
          : this.lost(`the subscription to ${this.subjectIn} failed: ${err.message}`, err),
    });
    this.events = nc.status();
    this.watch().catch((err: Error) =>
      this.lost(`the connection's status events failed: ${err.message}`, err),
    );
  }

  post(envelope: Parameters<Wire['post']>[0]): void {
    this.postBytes(encodeFrame(envelope));
  }

  /** Publishes the frame's chunks and flushes the connection: the frame leaves now, not at the end of the turn. */
  postBytes(frame: Uint8Array<ArrayBuffer>): void {
    if (this.closed || this.failure !== null) return;
    if (frame.length === 0 || frame.length > this.maxFrameBytes)
      throw new ProtocolError(
        `${this.name}: a frame of ${frame.length} bytes cannot be sent (1 to ${this.maxFrameBytes} bytes)`,
        { phase: 'send', expected: `1 to ${this.maxFrameBytes} bytes`, found: frame.length },
      );
    this.publish(frame);
    // A connection lost before the server's answer is reported by the status events (watch).
    this.nc.flush().catch(() => {});
  }

  listen(receive: (raw: unknown) => void, error: (cause: Error) => void): void {
    this.receive = receive;
    this.error = error;
    const frames = this.inbox;
    this.inbox = [];
    for (const frame of frames) this.deliver(frame);
    if (this.failure !== null) error(this.failure);
  }

  /** Stops this end and, with a close chunk, the other one; the connection stays open (its owner closes it). */
  close(): void {
    if (this.closed) return;
    this.shut();
    if (!this.nc.isClosed()) {
      try {
        this.publish(new Uint8Array(0));
      } catch {
        // The connection is going away: the other end learns it from its own status events.
      }
    }
  }

  private publish(frame: Uint8Array): void {
    const maxPayload = this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    const chunks = splitFrame(frame, this.clusterId, this.seqOut, maxPayload);
    this.seqOut = (this.seqOut + chunks.length) >>> 0;
    for (const chunk of chunks) this.nc.publish(this.subjectOut, chunk);
  }

  private shut(): void {
    if (this.closed) return;
    this.closed = true;
    this.sub.unsubscribe();
    // status() returns a QueuedIterator: stop() ends it now; leaving a for-await would wait for an event.
    (this.events as Partial<QueuedIterator<Status>>).stop?.();
    this.inbox = [];
    this.frame = null;
  }

  private async watch(): Promise<void> {
    for await (const s of this.events) {
      if (this.closed) return;
      if (s.type === 'disconnect')
        this.lost(`the connection to ${s.server} was lost: what was in flight is gone`);
      else if (s.type === 'close') this.lost('the connection was closed before the wire');
      else if (s.type === 'error') this.lost(`the server reported an error: ${s.error.message}`, s.error);
    }
  }

  /** One chunk: a whole frame is delivered, a close closes, a broken stream fails the wire. */
  private arrive(chunk: Uint8Array): void {
    if (this.closed || this.failure !== null) return;
    let frame: Uint8Array<ArrayBuffer> | 'close' | null;
    try {
      frame = this.assemble(chunk);
    } catch (err) {
      const cause = err as Error;
      this.fail(
        cause instanceof ProtocolError
          ? cause
          : new ProtocolError(
              `a chunk could not be read: ${cause.message}`,
              { edge: this.edgeIn },
              { cause },
            ),
      );
      return;
    }
    if (frame === 'close') this.shut();
    else if (frame !== null && this.receive === null) this.inbox.push(frame);
    else if (frame !== null) this.deliver(frame);
  }

  /**
   * Checks a chunk (Note [NATS chunks]) and adds it to its frame: the frame once whole, 'close' for a
   * close chunk, null for more to come (or a chunk of another run, dropped); a ProtocolError otherwise.
   */
  private assemble(chunk: Uint8Array): Uint8Array<ArrayBuffer> | 'close' | null {
    if (chunk.length < HEAD_BYTES) this.refuse(`a chunk of at least ${HEAD_BYTES} bytes`, chunk.length);
    const head = new DataView(chunk.buffer, chunk.byteOffset, HEAD_BYTES);
    const word = (i: number) => head.getUint32(i * 4, true);
    if (word(0) !== MAGIC) this.refuse("the magic 'BFNC'", `0x${word(0).toString(16)}`);
    if (word(1) !== this.clusterId) {
      this.dropped++;
      return null;
    }
    const [seq, kind, size] = [word(2), word(3), word(4)];
    if (seq !== this.seqIn)
      this.refuse(`chunk ${this.seqIn} (a chunk was lost or reordered)`, `chunk ${seq}`);
    this.seqIn = (seq + 1) >>> 0;
    if (kind === CLOSE && this.frame === null) return 'close';
    if (kind !== DATA) this.refuse(`chunk ${seq}: a data chunk`, `kind ${kind}`);
    if (this.frame === null) {
      // Checked before anything is allocated.
      if (size < 1 || size > this.maxFrameBytes)
        this.refuse(`chunk ${seq}: a frame of 1 to ${this.maxFrameBytes} bytes`, `${size} bytes`);
      this.frame = new Uint8Array(size);
      this.filled = 0;
    } else if (size !== this.frame.length)
      this.refuse(`chunk ${seq}: the ${this.frame.length} bytes of its frame`, `${size} bytes`);
    const body = chunk.subarray(HEAD_BYTES);
    if (body.length === 0 || this.filled + body.length > size)
      this.refuse(
        `chunk ${seq}: 1 to ${size - this.filled} bytes of its frame`,
        `${body.length} bytes (the frame is ${size} bytes, ${this.filled} arrived)`,
      );
    this.frame.set(body, this.filled);
    this.filled += body.length;
    if (this.filled < size) return null;
    const frame = this.frame;
    this.frame = null;
    return frame;
  }

  private deliver(frame: Uint8Array<ArrayBuffer>): void {
    try {
      this.receive!(frame);
    } catch (err) {
      // The receiver's own failure, thrown in a turn of its own, as a byte wire's would be: thrown
      // here it would end the connection's read loop, and every other wire on it.
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** The wire fails once: nothing it carries after a gap can be trusted (Note [NATS wire order]). */
  private fail(failure: ProtocolError): void {
    if (this.closed || this.failure !== null) return;
    this.failure = failure;
    this.frame = null;
    this.error?.(failure);
  }

  private lost(what: string, cause?: Error): void {
    this.fail(new ProtocolError(what, { edge: this.edgeIn, phase: 'receive' }, { cause }));
  }

  private refuse(expected: string, found: string | number): never {
    throw new ProtocolError(`expected ${expected}, found ${found}`, {
      edge: this.edgeIn,
      phase: 'receive',
      expected,
      found,
    });
  }
}
