import { installedPool } from '../tensor/pool.ts';
import type { DType, Storage } from '../tensor/tensor.ts';
import type { Check } from './check.ts';

// Note [tensor ring]
// Between two threads of one process a large tensor used to travel as its own transferred buffer: the
// sender then makes a fresh one for its next tensor of that shape (the coordinator a feed's rows
// every step), and the receiver takes in memory it did not allocate. On a machine where a fresh page
// costs microseconds to touch (about 11 us a 4 KiB page on the VMs this was measured on), and where V8
// counts every buffer a thread takes in toward its next collection, that was the largest cost of a
// one-worker step besides its compute: the MNIST MLP's step took 3.9-4.4 ms with its feed in memory
// both threads reuse, against 5.0-5.2 ms with a fresh transferred buffer (docs/measurements.md).
//
// So a link whose two ends share memory (a MessagePort between threads) and whose receiver keeps a
// storage pool (a host, not the coordinator) sends large tensors through a ring: a SharedArrayBuffer
// that the sender writes tensors into, one after another, and the receiver copies them out of into
// storages of its own pool as it decodes the envelope. The envelope names each such tensor by its
// offset in the ring instead of a buffer (its row's place is RING_AT; the offsets are listed in row
// order beside the rows), and says where the sender's writing ended; once the receiver has decoded
// the envelope it stores that end in the ring's first word, which frees what is before it. The
// sender writes only into room the receiver has freed (a tensor never wraps: when it does not fit
// before the end of the ring, the writing starts over at the front), and positions are byte counts
// modulo 2^32 over a ring whose size is a power of two, so they never need resetting.
// A tensor that does not fit in the free room is transferred as before: nothing ever waits for the
// ring. A ring is made the first time an envelope's tensors do not fit, twice the size of what that
// envelope carried (at least MIN_RING_BYTES, at most MAX_RING_BYTES: a link of every pair of 8
// workers at its largest would hold 1 GiB, and beyond a few MiB a tensor's transfer costs little
// next to its size); it is sent with the first envelope that uses it, and the receiver takes it up
// from that envelope on. Its pages are touched only as tensors are written into it. The copy out
// keeps every byte (a same-type typed array copy), so what arrives is bitwise what was sent. The
// rings are not counted in a host's memory budget (Note [memory budget]).

/** The smallest ring a link makes, and the largest: beyond, tensors are transferred as before. */
export const MIN_RING_BYTES = 1 << 20;
export const MAX_RING_BYTES = 16 << 20;
/** The first 8 bytes hold the receiver's end (an Int32, bytes modulo 2^32); the tensors follow. */
const HEADER_BYTES = 8;

/** A row's place (ROW.AT) for a tensor in the ring: its offset is in the envelope's ring mark. */
export const RING_AT = -(2 ** 31);

/**
 * What an envelope says of its link's ring: a new ring to take up, where its ring tensors are (in row
 * order), and where the sender's writing ended.
 */
export interface RingMark {
  readonly buffer?: SharedArrayBuffer;
  readonly at: readonly number[];
  readonly end: number;
}

/** The sending end of a link's ring (Note [tensor ring]). */
export class RingWriter {
  private freed: Int32Array | null = null;
  private bytes: Uint8Array | null = null;
  private size = 0;
  /** Bytes written since the ring was made, modulo 2^32. */
  private written = 0;
  /** The ring not yet announced to the receiver. */
  private fresh = false;
  /** Where this envelope's tensors went, their bytes, and the bytes of those that did not fit. */
  private at: number[] = [];
  private placed = 0;
  private missed = 0;

  /**
   * Writes a tensor's bytes into the ring; returns their offset, or -1 when they do not fit (the
   * caller transfers the tensor instead).
   */
  place(data: Storage): number {
    const n = data.byteLength;
    const bytes = this.bytes;
    if (bytes === null) {
      this.missed += n;
      return -1;
    }
    const size = this.size;
    const busy = (this.written - (Atomics.load(this.freed!, 0) >>> 0)) >>> 0;
    let at = this.written & (size - 1);
    // A tensor never wraps: at the end of the ring the writing starts over at the front.
    const skip = at + n > size ? size - at : 0;
    if (busy + skip + n > size) {
      this.missed += n;
      return -1;
    }
    if (skip > 0) at = 0;
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, n), at + HEADER_BYTES);
    this.written = (this.written + skip + ((n + 7) & ~7)) >>> 0;
    this.placed += n;
    this.at.push(at);
    return at;
  }

  /**
   * The envelope's ring mark, or null when it used no ring; a ring too small for what this envelope
   * carried is replaced by a larger one for the next.
   */
  mark(): RingMark | null {
    const used = this.at.length > 0;
    const mark: RingMark | null = !used
      ? null
      : this.fresh
        ? { buffer: this.bytes!.buffer as SharedArrayBuffer, at: this.at, end: this.written }
        : { at: this.at, end: this.written };
    if (used) {
      this.fresh = false;
      this.at = [];
    }
    const want = 2 * (this.placed + this.missed);
    if (this.missed > 0 && want > this.size && this.size < MAX_RING_BYTES) {
      let size = Math.max(MIN_RING_BYTES, this.size * 2);
      while (size < want && size < MAX_RING_BYTES) size *= 2;
      const buffer = new SharedArrayBuffer(HEADER_BYTES + size);
      this.freed = new Int32Array(buffer, 0, 1);
      this.bytes = new Uint8Array(buffer);
      this.size = size;
      this.written = 0;
      this.fresh = true;
    }
    this.placed = 0;
    this.missed = 0;
    return mark;
  }
}

/** The receiving end of a link's ring (Note [tensor ring]). */
export class RingReader {
  private freed: Int32Array | null = null;
  private bytes: Uint8Array | null = null;

  /** Takes up the ring an envelope announces; checks its mark. */
  adopt(mark: unknown, c: Check): RingMark {
    const m = c.record(mark, ['at', 'end'], ['buffer']) as { at: unknown; end: unknown; buffer?: unknown };
    c.int(m.end, 'ring.end', 0, 2 ** 32);
    if (!Array.isArray(m.at)) c.fail('ring.at: an array of offsets', m.at);
    if (m.buffer !== undefined) {
      const b = m.buffer;
      const size = b instanceof SharedArrayBuffer ? b.byteLength - HEADER_BYTES : 0;
      if (size < MIN_RING_BYTES || size > MAX_RING_BYTES || (size & (size - 1)) !== 0)
        c.fail(`ring.buffer: a SharedArrayBuffer of ${HEADER_BYTES} + a power of two bytes`, b);
      this.freed = new Int32Array(b as SharedArrayBuffer, 0, 1);
      this.bytes = new Uint8Array(b as SharedArrayBuffer);
    } else if (this.bytes === null) c.fail('ring.buffer with the first envelope that uses the ring', m);
    return m as RingMark;
  }

  /**
   * A tensor's bytes at `at`, copied into a free storage of this thread's pool, not recorded (the
   * host records it when it is delivered: Note [step arena]), or into a fresh one.
   */
  take(at: unknown, dtype: DType, size: number, c: Check): Storage {
    const bytes = this.bytes;
    const n = size * (dtype === 'float32' ? 4 : 8);
    if (bytes === null) return c.fail('a buffer (this link has no ring)', at);
    const room = bytes.byteLength - HEADER_BYTES;
    if (typeof at !== 'number' || !Number.isInteger(at) || at < 0 || at % 8 !== 0 || at + n > room)
      c.fail(`a ring offset of a multiple of 8 with ${n} bytes before ${room}`, at);
    const buffer = installedPool()?.takeBuffer(n) ?? new ArrayBuffer(n);
    // A same-type copy: byte for byte, NaN payloads and -0 included.
    if (dtype === 'float64') {
      const data = new Float64Array(buffer);
      data.set(new Float64Array(bytes.buffer, HEADER_BYTES + at, size));
      return data;
    }
    const data = new Float32Array(buffer);
    data.set(new Float32Array(bytes.buffer, HEADER_BYTES + at, size));
    return data;
  }

  /** Frees the ring up to where the envelope's writing ended. */
  release(mark: RingMark): void {
    Atomics.store(this.freed!, 0, mark.end | 0);
  }
}
