// A Wire over a TCP connection: frames (Note [byte framing]) on a byte stream. tcp-listener.ts opens
// the connections and authenticates them; from then on both ends are a TcpWire.
import type { Socket } from 'node:net';
import { InputError, ProtocolError } from '../errors.ts';
import type { StoragePool } from '../tensor/pool.ts';
import type { Envelope } from './envelope.ts';
import { encodeFrame, FrameWithBlobs } from './frame.ts';
import { BLOB_BIT, FrameCutter, MAX_FRAME_BYTES, PREFIX_BYTES } from './frame-cutter.ts';
import type { Wire } from './wire.ts';

// Framing (lengths, blobs, the goodbye) is Note [stream framing] and Note [tensors beside the frame]
// in frame-cutter.ts.
// A wire given the runtime's cluster id stamps it into the last word of each envelope's head and drops
// (and counts) an envelope that arrives with another: a stale process of an earlier runtime that
// somehow got through the handshake cannot inject data into this one.
// Per-link FIFO is the stream's own order: one connection per link, frames written in the order they
// are posted, and a frame held back for 'drain' holds every later one behind it. The deferred update
// relies on it (Note [deferred update]): an update travels behind its step's data and ahead of the
// next step's start.
// Frames are encoded when posted (Note [byte wires and recycled storage]), and large tensors are taken
// over (detached from the sender, Note [tensors beside the frame]): `socket.write` keeps a reference
// to what it is given until the kernel has taken it, and that is always the wire's own.

/** Where a frame's head keeps the cluster id (its last word, Note [byte framing]), and the frame's magic. */
const CLUSTER_AT = 36;
const FRAME_MAGIC = 0x574c4642;

export interface TcpWireOptions {
  /** The largest frame sent or accepted (default 1 GiB; at most MAX_FRAME_BYTES). */
  readonly maxFrameBytes?: number;
  /**
   * Bytes posted and not yet taken by the kernel past which the peer counts as dead, as one that does
   * not read (default 2 GiB). A frame is always accepted when nothing is queued.
   */
  readonly maxQueuedBytes?: number;
  /**
   * The runtime's id (an unsigned 32-bit integer), stamped into the head of every envelope this end
   * sends; a frame that arrives with another is dropped and counted in `dropped` (Note [stream framing]).
   * Unset: nothing is stamped or checked.
   */
  readonly clusterId?: number;
}

/** The options with their defaults, checked (an InputError names a bad one). */
export function wireLimits(options: TcpWireOptions): Required<Omit<TcpWireOptions, 'clusterId'>> {
  const { maxFrameBytes = 2 ** 30, maxQueuedBytes = 2 ** 31 } = options;
  const check = (name: string, v: number, hi: number) => {
    if (!Number.isSafeInteger(v) || v < 1 || v > hi)
      throw new InputError(`${name}: expected an integer in [1, ${hi}], found ${v}`, {
        expected: `[1, ${hi}]`,
        found: v,
      });
  };
  check('maxFrameBytes', maxFrameBytes, MAX_FRAME_BYTES);
  check('maxQueuedBytes', maxQueuedBytes, Number.MAX_SAFE_INTEGER);
  return { maxFrameBytes, maxQueuedBytes };
}

const GOODBYE = new Uint8Array(PREFIX_BYTES);
const NO_BLOBS: readonly ArrayBuffer[] = Object.freeze([]);

/** What one post writes: a frame, the blobs ahead of it, and their bytes with every length prefix. */
interface Unit {
  readonly frame: Uint8Array;
  readonly blobs: readonly ArrayBuffer[];
  readonly bytes: number;
}

function lengthPrefix(word: number): Uint8Array {
  const prefix = new Uint8Array(PREFIX_BYTES);
  new DataView(prefix.buffer).setUint32(0, word, true);
  return prefix;
}

/**
 * The buffer's memory under a new ArrayBuffer, the old one detached, as a port's transfer leaves it:
 * no copy, and the sender's pool forgets it (Note [tensors beside the frame]).
 */
function takeOver(b: ArrayBuffer): ArrayBuffer {
  return structuredClone(b, { transfer: [b] });
}

/**
 * One end of an authenticated TCP connection as a Wire (Note [stream framing]). Reads nothing until
 * `listen`; a frame the kernel cannot take yet waits, with every later one, for 'drain'
 * (`queuedBytes`); a connection that breaks is reported once through the error callback, as a
 * ProtocolError naming the link.
 */
export class TcpWire implements Wire {
  /** 'tcp 10.0.0.2:7000': the other end's address. */
  readonly name: string;
  private readonly limits: Required<Omit<TcpWireOptions, 'clusterId'>>;
  private readonly clusterId: number | null;
  /** Where large tensors' buffers come from and go back to (Note [tensors beside the frame]). */
  private pool: StoragePool | null = null;
  /** Frames of another runtime (another cluster id) dropped on receipt. */
  dropped = 0;
  private readonly cutter: FrameCutter;
  private closed = false;
  /** Why the connection broke, kept for a listener that comes later. */
  private broken: ProtocolError | null = null;
  private receive: ((raw: unknown) => void) | null = null;
  private error: ((cause: Error) => void) | null = null;
  /** The socket's buffer is full: frames wait in `held`, oldest first, for 'drain'. */
  private blocked = false;
  private held: Unit[] = [];
  private unwritten = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly socketClosed: Promise<void>;

  /** `socket` is connected, authenticated and paused; `edge` names the link for errors. */
  constructor(
    private readonly socket: Socket,
    readonly edge: string,
    options: TcpWireOptions = {},
  ) {
    this.name = `tcp ${socket.remoteAddress}:${socket.remotePort}`;
    this.limits = wireLimits(options);
    this.clusterId = options.clusterId === undefined ? null : options.clusterId >>> 0;
    this.cutter = new FrameCutter(
      this.limits.maxFrameBytes,
      this.name,
      edge,
      (bytes) => this.pool?.takeBuffer(bytes) ?? new ArrayBuffer(bytes),
    );
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.pause();
    socket.setNoDelay(true);
    socket.on('drain', () => this.drain());
    socket.on('error', (err) => this.fail(`the connection failed: ${err.message}`, err));
    socket.on('end', () => {
      const partial = this.cutter.partial;
      this.fail(
        partial === null
          ? 'the peer closed the connection without a goodbye (its process died, or it closed the socket)'
          : `the connection closed in the middle of a frame (${partial})`,
      );
    });
    socket.on('close', () => this.fail('the connection closed'));
  }

  usePool(pool: StoragePool): void {
    this.pool = pool;
  }

  /** Bytes posted and not yet taken by the kernel: frames waiting for 'drain', and the socket's buffer. */
  get queuedBytes(): number {
    return this.unwritten;
  }

  /** Resolves when nothing posted waits for the kernel any more (or the wire is closed). */
  drained(): Promise<void> {
    if (this.unwritten === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Resolves once the socket is closed at this end: after `close()` and the peer's answer, a goodbye, or a failure. */
  whenClosed(): Promise<void> {
    return this.socketClosed;
  }

  /**
   * Sends the envelope: its large tensors ahead of its frame, their buffers taken over as a port
   * takes a transfer (Note [tensors beside the frame]), the rest encoded into the frame at once.
   */
  post(envelope: Envelope): void {
    if (this.closed) return;
    const frame = encodeFrame(envelope, envelope.buffers.length > 0);
    // After the frame, which reads their lengths: taking them over detaches them.
    const blobs = envelope.buffers.length === 0 ? NO_BLOBS : envelope.buffers.map(takeOver);
    if (this.clusterId !== null) new DataView(frame.buffer).setUint32(CLUSTER_AT, this.clusterId, true);
    this.send(frame, blobs);
  }

  postBytes(frame: Uint8Array<ArrayBuffer>): void {
    this.send(frame, NO_BLOBS);
  }

  private send(frame: Uint8Array, blobs: readonly ArrayBuffer[]): void {
    if (this.closed) return;
    const max = this.limits.maxFrameBytes;
    let size = frame.byteLength;
    let blobBytes = 0;
    for (const b of blobs) blobBytes += b.byteLength;
    if (size === 0 || size > max || blobBytes > max)
      throw new ProtocolError(
        `${this.edge} over ${this.name}: a frame of ${size} bytes${blobs.length > 0 ? ` with ${blobBytes} bytes of tensors beside it` : ''} ` +
          `cannot be sent: expected 1 to ${max} bytes each (maxFrameBytes)`,
        { edge: this.edge, phase: 'send', expected: `[1, ${max}]`, found: Math.max(size, blobBytes) },
      );
    size += PREFIX_BYTES + blobBytes + blobs.length * PREFIX_BYTES;
    if (this.unwritten > 0 && this.unwritten + size > this.limits.maxQueuedBytes) {
      this.fail(
        `${this.unwritten} bytes wait for the peer to read them, and ${size} more would pass ` +
          `maxQueuedBytes (${this.limits.maxQueuedBytes}): the peer does not read`,
      );
      return;
    }
    this.unwritten += size;
    const unit: Unit = { frame, blobs, bytes: size };
    // Behind a held frame, a frame waits its turn (never reordered).
    if (this.blocked) this.held.push(unit);
    else this.blocked = !this.write(unit);
  }

  listen(receive: (raw: unknown) => void, error: (cause: Error) => void): void {
    this.receive = receive;
    this.error = error;
    if (this.broken !== null) {
      // Later, as any report: the listener's owner may still be under construction.
      const broken = this.broken;
      queueMicrotask(() => error(broken));
      return;
    }
    this.socket.on('data', (chunk: Buffer) => this.read(chunk));
    this.socket.resume();
  }

  /** Sends the goodbye (Note [stream framing]) after what the socket holds, and ends the connection. */
  close(): void {
    if (this.closed) return;
    this.shut();
    this.socket.end(GOODBYE);
    // Reads on, discarding, so that the peer's end of the stream closes the socket.
    this.socket.resume();
  }

  private read(chunk: Buffer): void {
    if (this.closed) return;
    const cut = this.cutter.push(chunk, (frame, blobs) => {
      if (this.clusterId !== null && !this.ours(frame)) this.dropped++;
      else this.receive!(blobs.length === 0 ? frame : new FrameWithBlobs(frame, blobs));
      return !this.closed;
    });
    if (cut instanceof ProtocolError) this.fail(cut);
    else if (cut === 'goodbye') {
      // The peer closed its end: so does this one, silently, as a byte pipe's close does.
      this.shut();
      this.socket.end();
      this.socket.resume();
    }
  }

  /** Whether an envelope's frame carries this runtime's cluster id (anything else is left to the reader's checks). */
  private ours(frame: Uint8Array): boolean {
    if (frame.byteLength < CLUSTER_AT + 4) return true;
    const words = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    return words.getUint32(0, true) !== FRAME_MAGIC || words.getUint32(CLUSTER_AT, true) === this.clusterId;
  }

  /** Writes a frame and its blobs with their lengths, in one system call; false when the kernel's buffer is full. */
  private write(unit: Unit): boolean {
    this.socket.cork();
    for (const b of unit.blobs) {
      this.socket.write(lengthPrefix(BLOB_BIT + b.byteLength));
      this.socket.write(new Uint8Array(b));
    }
    this.socket.write(lengthPrefix(unit.frame.byteLength));
    const ok = this.socket.write(unit.frame, (err) => this.written(unit, err));
    this.socket.uncork();
    return ok;
  }

  private drain(): void {
    this.blocked = false;
    let sent = 0;
    while (sent < this.held.length && !this.blocked && !this.closed)
      this.blocked = !this.write(this.held[sent++]!);
    this.held.splice(0, sent);
  }

  private written(unit: Unit, err: Error | null | undefined): void {
    if (this.closed || err) return;
    // The kernel has the blobs' bytes: their buffers go back to the host's pool, for the next
    // tensor of their size (Note [tensors beside the frame]).
    if (this.pool !== null) for (const b of unit.blobs) this.pool.giveBuffer(b);
    this.unwritten -= unit.bytes;
    if (this.unwritten === 0) this.settleDrained();
  }

  /** Stops sending and receiving; what waits for 'drain' is dropped with the connection. */
  private shut(): void {
    this.closed = true;
    this.held = [];
    this.blocked = false;
    this.unwritten = 0;
    this.settleDrained();
  }

  private settleDrained(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /** The connection broke: reported once (unless this end closed it first), and the socket destroyed. */
  private fail(why: string | ProtocolError, cause?: unknown): void {
    if (this.closed) return;
    this.shut();
    this.broken =
      why instanceof ProtocolError
        ? why
        : new ProtocolError(
            `${this.edge} over ${this.name}: ${why}`,
            { edge: this.edge, phase: 'connection' },
            { cause },
          );
    this.socket.destroy();
    this.error?.(this.broken);
  }
}
