// Cutting a TCP byte stream back into frames and the tensors sent beside them (Note [stream framing]).
import { ProtocolError } from '../errors.ts';

// Note [stream framing]
// TCP carries bytes, not messages: each frame goes out as its length (u32, little-endian) and its
// bytes, and the receiver cuts the stream back into frames (FrameCutter). A frame that arrives within
// one chunk is handed on as a view into it; one split across chunks is copied once, into a buffer of
// the declared length, allocated only after that length is checked against `maxFrameBytes`: a length
// over it is refused and the connection closed, so neither a peer nor a corrupt stream makes the
// receiver allocate what it likes. That buffer stays with the cutter and takes the next split frame
// too (frames up to REUSED_FRAME_BYTES; a larger one gets a buffer of its own each time): a fresh
// 16 MiB buffer per frame costs its page faults and, later, a collection. So a frame is the
// receiver's only while `receive` runs: decodeFrame copies its sections out before it returns (Note
// [byte framing]).
// A length of 0, which no frame has, is the goodbye of an orderly `close()`; a stream that ends
// without it, or in the middle of a frame, is a dead peer, reported through the wire's error callback.
//
// Note [tensors beside the frame]
// An envelope's large tensors (Note [columnar envelope]) do not go inside its frame on TCP: each goes
// ahead of it as a blob, a length with the top bit set (BLOB_BIT) and the tensor's bytes, and the
// frame marks each such buffer as sent beside it (Note [byte framing]). The sender hands the socket the
// tensor's own buffer, taken over as a port would take it (detached from the sender, so its step arena
// forgets it: Note [byte wires and recycled storage]), and once the kernel has the bytes the buffer
// goes back to the sending thread's pool (Note [storage pool]); the receiver copies the socket's chunks
// straight into a buffer of the blob's size (a free one from its thread's pool when it has one), which
// becomes the tensor, recorded by its host like any received tensor. Inside a frame, a 16 MiB tensor was
// copied three times more (encoded into the frame, put back together from the chunks, decoded out of
// the frame), which held two node processes to under half a raw socket's bandwidth
// (docs/measurements.md). A blob's length is checked against `maxFrameBytes` before anything is
// allocated for it, and so is the sum of the blobs waiting for their frame; a frame that does not take
// exactly the blobs before it is refused by decodeFrame.

/** The largest frame (or blob) a length prefix can describe: its top bit marks a blob. */
export const MAX_FRAME_BYTES = 2 ** 31 - 1;
/** Set in a length prefix that announces a blob (Note [tensors beside the frame]). */
export const BLOB_BIT = 2 ** 31;
export const PREFIX_BYTES = 4;
/** Split frames up to this size are put together in one buffer the cutter keeps (Note [stream framing]). */
const REUSED_FRAME_BYTES = 64 * 2 ** 20;

/**
 * Cuts a byte stream back into frames and the blobs sent ahead of them (Note [stream framing], Note
 * [tensors beside the frame]): chunks in, frames out, in order. Pure: no socket, so every way a stream
 * can be cut is testable.
 */
export class FrameCutter {
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private prefixBytes = 0;
  private frame: Uint8Array<ArrayBuffer> | null = null;
  /** Whether `frame` is a blob (filled into a buffer of its own) rather than a frame. */
  private blob = false;
  private filled = 0;
  /** Blobs received whose frame has not arrived yet, and their bytes. */
  private blobs: ArrayBuffer[] = [];
  private blobBytes = 0;
  /** The buffer split frames are put together in, reused from one to the next. */
  private kept: Uint8Array<ArrayBuffer> | null = null;

  constructor(
    private readonly maxFrameBytes: number,
    /** For errors: which connection, which link. */
    private readonly name: string,
    private readonly edge: string,
    /** Where a blob of so many bytes is received: a buffer nothing else holds (by default a fresh one). */
    private readonly blobBuffer: (bytes: number) => ArrayBuffer = (bytes) => new ArrayBuffer(bytes),
  ) {}

  /** What of a frame has arrived when the stream stops here, or null at a frame boundary. */
  get partial(): string | null {
    const what = this.blob ? 'blob' : 'frame';
    if (this.frame !== null) return `${this.filled} of a ${what}'s ${this.frame.byteLength} bytes`;
    if (this.prefixBytes > 0) return `${this.prefixBytes} of a length's ${PREFIX_BYTES} bytes`;
    return this.blobs.length > 0 ? `${this.blobs.length} blobs without their frame` : null;
  }

  /**
   * Hands each frame `chunk` completes to `deliver`, with the blobs sent ahead of it (empty for most
   * frames; they are the receiver's to keep); `deliver` returns false to stop reading. Returns
   * 'goodbye' at the orderly end of the stream, 'stopped' when `deliver` said so, 'more' when the chunk
   * is used up, or a ProtocolError for a declared length over the limit (found before anything is
   * allocated for it).
   */
  push(
    chunk: Uint8Array,
    deliver: (frame: Uint8Array, blobs: readonly ArrayBuffer[]) => boolean,
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
        const word = new DataView(this.prefix.buffer).getUint32(0, true);
        if (word === 0) return 'goodbye';
        const blob = word >= BLOB_BIT;
        const length = blob ? word - BLOB_BIT : word;
        const over = this.refuse(blob, length);
        if (over !== null) return over;
        if (blob) {
          // A buffer of its own, whole chunk or not: it becomes the tensor (Note [tensors beside the frame]).
          this.frame = new Uint8Array(this.blobBuffer(length), 0, length);
          this.blob = true;
          this.blobBytes += length;
        } else if (n - at >= length) {
          // Whole within the chunk: a view, not a copy.
          const whole = new Uint8Array(chunk.buffer, chunk.byteOffset + at, length);
          at += length;
          if (!deliver(whole, this.takeBlobs())) return 'stopped';
          continue;
        } else this.frame = this.buffer(length);
        this.filled = 0;
      }
      const take = Math.min(this.frame.byteLength - this.filled, n - at);
      this.frame.set(chunk.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled < this.frame.byteLength) return 'more';
      const done = this.frame;
      this.frame = null;
      if (this.blob) {
        this.blob = false;
        this.blobs.push(done.buffer);
      } else if (!deliver(done, this.takeBlobs())) return 'stopped';
    }
    return 'more';
  }

  /** The error for a declared length over the limit (for a blob: with the blobs already waiting), or null. */
  private refuse(blob: boolean, length: number): ProtocolError | null {
    const waiting = blob ? this.blobBytes : 0;
    if (length === 0 && blob) return this.error('a blob of 0 bytes, which no tensor sends', 0);
    if (length + waiting <= this.maxFrameBytes) return null;
    const what = blob
      ? `a blob of ${length} bytes declared${waiting > 0 ? ` after ${waiting} bytes of blobs for the same frame` : ''}`
      : `a frame of ${length} bytes declared`;
    return this.error(`${what}, over the limit of ${this.maxFrameBytes} (maxFrameBytes)`, length + waiting);
  }

  private error(what: string, found: number): ProtocolError {
    return new ProtocolError(`${this.edge} over ${this.name}: ${what}; the connection is closed`, {
      edge: this.edge,
      phase: 'receive',
      expected: `<= ${this.maxFrameBytes}`,
      found,
    });
  }

  private takeBlobs(): readonly ArrayBuffer[] {
    if (this.blobs.length === 0) return NO_BLOBS;
    const blobs = this.blobs;
    this.blobs = [];
    this.blobBytes = 0;
    return blobs;
  }

  /** Where a split frame of `length` bytes is put together: the kept buffer (grown if need be), or a fresh one past the bound. */
  private buffer(length: number): Uint8Array<ArrayBuffer> {
    if (length > REUSED_FRAME_BYTES) return new Uint8Array(length);
    if (this.kept === null || this.kept.byteLength < length) this.kept = new Uint8Array(length);
    return this.kept.subarray(0, length);
  }
}

/** Shared by every frame without blobs. */
const NO_BLOBS: readonly ArrayBuffer[] = Object.freeze([]);
