// A Wire over a TCP connection: frames (Note [byte framing]) on a byte stream. tcp-listener.ts opens
// the connections and authenticates them; from then on both ends are a TcpWire.
import type { Socket } from 'node:net';
import { InputError, ProtocolError } from '../errors.ts';
import type { Envelope } from './envelope.ts';
import { encodeFrame } from './frame.ts';
import type { Wire } from './wire.ts';

// Note [stream framing]
// TCP carries bytes, not messages: each frame goes out as its length (u32, little-endian) and its
// bytes, and the receiver cuts the stream back into frames (FrameCutter). A frame that arrives within
// one chunk is handed on as a view into it; one split across chunks is copied once, into a buffer of
// the declared length, allocated only after that length is checked against `maxFrameBytes`: a length
// over it is refused and the connection closed, so neither a peer nor a corrupt stream makes the
// receiver allocate what it likes. That buffer stays with the cutter and takes the next split frame
// too (frames up to REUSED_FRAME_BYTES; a larger one gets a buffer of its own each time): a fresh
// 16 MiB buffer per frame costs its page faults and, later, a collection, and held 16 MiB frames
// between two processes to about half a raw socket's speed (docs/measurements.md). So a frame is the
// receiver's only while `receive` runs: decodeFrame copies every section out before it returns (Note
// [byte framing]).
// A length of 0, which no frame has, is the goodbye of an orderly `close()`; a stream that ends
// without it, or in the middle of a frame, is a dead peer, reported through the wire's error callback.
// A wire given the runtime's cluster id stamps it into the last word of each envelope's head and drops
// (and counts) an envelope that arrives with another: a stale process of an earlier runtime that
// somehow got through the handshake cannot inject data into this one.
// Per-link FIFO is the stream's own order: one connection per link, frames written in the order they
// are posted, and a frame held back for 'drain' holds every later one behind it. The deferred update
// relies on it (Note [deferred update]): an update travels behind its step's data and ahead of the
// next step's start.
// Frames are encoded when posted (Note [byte wires and recycled storage]): `socket.write` keeps a
// reference to what it is given until the kernel has taken it, and that is always the wire's own copy.

/** Where a frame's head keeps the cluster id (its last word, Note [byte framing]), and the frame's magic. */
const CLUSTER_AT = 36;
const FRAME_MAGIC = 0x574c4642;

/** The largest frame a u32 length prefix can describe. */
export const MAX_FRAME_BYTES = 2 ** 32 - 1;
const PREFIX_BYTES = 4;
/** Split frames up to this size are put together in one buffer the cutter keeps (Note [stream framing]). */
const REUSED_FRAME_BYTES = 64 * 2 ** 20;

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

/**
 * Cuts a byte stream back into frames (Note [stream framing]): chunks in, frames out, in order. Pure:
 * no socket, so every way a stream can be cut is testable.
 */
export class FrameCutter {
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private prefixBytes = 0;
  private frame: Uint8Array<ArrayBuffer> | null = null;
  private filled = 0;
  /** The buffer split frames are put together in, reused from one to the next. */
  private kept: Uint8Array<ArrayBuffer> | null = null;

  constructor(
    private readonly maxFrameBytes: number,
    /** For errors: which connection, which link. */
    private readonly name: string,
    private readonly edge: string,
  ) {}

  /** What of a frame has arrived when the stream stops here, or null at a frame boundary. */
  get partial(): string | null {
    if (this.frame !== null) return `${this.filled} of a frame's ${this.frame.byteLength} bytes`;
    return this.prefixBytes > 0 ? `${this.prefixBytes} of a length's ${PREFIX_BYTES} bytes` : null;
  }

  /**
   * Hands each frame `chunk` completes to `deliver`, which returns false to stop reading. Returns
   * 'goodbye' at the orderly end of the stream, 'stopped' when `deliver` said so, 'more' when the
   * chunk is used up, or a ProtocolError for a declared length over the limit (found before anything
   * is allocated for it).
   */
  push(
    chunk: Uint8Array,
    deliver: (frame: Uint8Array) => boolean,
  ): 'more' | 'goodbye' | 'stopped' | ProtocolError {
    let at = 0;
    const n = chunk.byteLength;
    while (at < n) {
      if (this.frame === null) {
        const take = Math.min(PREFIX_BYTES - this.prefixBytes, n - at);
        this.prefix.set(chunk.subarray(at, at + take), this.prefixBytes);
        this.prefixBytes += take;
        at += take;
        if (this.prefixBytes < PREFIX_BYTES) return 'more';
        this.prefixBytes = 0;
        const length = new DataView(this.prefix.buffer).getUint32(0, true);
        if (length === 0) return 'goodbye';
        if (length > this.maxFrameBytes)
          return new ProtocolError(
            `${this.edge} over ${this.name}: a frame of ${length} bytes declared, over the limit of ` +
              `${this.maxFrameBytes} (maxFrameBytes); the connection is closed`,
            { edge: this.edge, phase: 'receive', expected: `<= ${this.maxFrameBytes}`, found: length },
          );
        if (n - at >= length) {
          // Whole within the chunk: a view, not a copy.
          const whole = new Uint8Array(chunk.buffer, chunk.byteOffset + at, length);
          at += length;
          if (!deliver(whole)) return 'stopped';
          continue;
        }
        this.frame = this.buffer(length);
        this.filled = 0;
      }
      const take = Math.min(this.frame.byteLength - this.filled, n - at);
      this.frame.set(chunk.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled < this.frame.byteLength) return 'more';
      const done = this.frame;
      this.frame = null;
      if (!deliver(done)) return 'stopped';
    }
    return 'more';
  }

  /** Where a split frame of `length` bytes is put together: the kept buffer (grown if need be), or a fresh one past the bound. */
  private buffer(length: number): Uint8Array<ArrayBuffer> {
    if (length > REUSED_FRAME_BYTES) return new Uint8Array(length);
    if (this.kept === null || this.kept.byteLength < length) this.kept = new Uint8Array(length);
    return this.kept.subarray(0, length);
  }
}

const GOODBYE = new Uint8Array(PREFIX_BYTES);

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
  private held: Uint8Array[] = [];
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
    this.cutter = new FrameCutter(this.limits.maxFrameBytes, this.name, edge);
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

  post(envelope: Envelope): void {
    if (this.closed) return;
    const frame = encodeFrame(envelope);
    if (this.clusterId !== null) new DataView(frame.buffer).setUint32(CLUSTER_AT, this.clusterId, true);
    this.postBytes(frame);
  }

  postBytes(frame: Uint8Array<ArrayBuffer>): void {
    if (this.closed) return;
    const size = frame.byteLength;
    if (size === 0 || size > this.limits.maxFrameBytes)
      throw new ProtocolError(
        `${this.edge} over ${this.name}: a frame of ${size} bytes cannot be sent: expected 1 to ` +
          `${this.limits.maxFrameBytes} bytes (maxFrameBytes)`,
        { edge: this.edge, phase: 'send', expected: `[1, ${this.limits.maxFrameBytes}]`, found: size },
      );
    if (this.unwritten > 0 && this.unwritten + size > this.limits.maxQueuedBytes) {
      this.fail(
        `${this.unwritten} bytes wait for the peer to read them, and ${size} more would pass ` +
          `maxQueuedBytes (${this.limits.maxQueuedBytes}): the peer does not read`,
      );
      return;
    }
    this.unwritten += PREFIX_BYTES + size;
    // Behind a held frame, a frame waits its turn (Note [stream framing]: never reordered).
    if (this.blocked) this.held.push(frame);
    else this.blocked = !this.write(frame);
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
    const cut = this.cutter.push(chunk, (frame) => {
      if (this.clusterId !== null && !this.ours(frame)) this.dropped++;
      else this.receive!(frame);
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

  /** Writes one frame with its length, in one system call; false when the kernel's buffer is full. */
  private write(frame: Uint8Array): boolean {
    const prefix = new Uint8Array(PREFIX_BYTES);
    new DataView(prefix.buffer).setUint32(0, frame.byteLength, true);
    const bytes = PREFIX_BYTES + frame.byteLength;
    this.socket.cork();
    this.socket.write(prefix);
    const ok = this.socket.write(frame, () => this.written(bytes));
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

  private written(bytes: number): void {
    if (this.closed) return;
    this.unwritten -= bytes;
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
