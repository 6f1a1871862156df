// What carries envelopes between two parties, whatever it is: a MessagePort between threads, bytes
// in memory, later a TCP connection or a NATS subject. A Link (link.ts) batches messages over one.
import type { StoragePool } from '../tensor/pool.ts';
import type { Envelope } from './envelope.ts';

/** One end of a connection to one peer: frames or envelopes out, whatever arrives in, in order. */
export interface Wire {
  /** What carries the data, for errors: 'MessagePort', 'in-memory bytes', 'tcp 10.0.0.2:7000'. */
  readonly name: string;
  /**
   * Sends one envelope and hands over the buffers of `transfer`: a port transfers them, a byte wire
   * encodes the envelope into one frame before it returns (Note [byte wires and recycled storage]).
   */
  post(envelope: Envelope, transfer: readonly ArrayBuffer[]): void;
  /**
   * True when both ends are threads of one process, so a SharedArrayBuffer sent over it is shared:
   * large tensors to a host then go through a ring (Note [tensor ring] in ring.ts).
   */
  readonly sharesMemory?: boolean;
  /** Sends one frame (Note [byte framing] in frame.ts) and hands it over. */
  postBytes(frame: Uint8Array<ArrayBuffer>): void;
  /**
   * What arrives goes to `receive` as it is, undecoded (an envelope or a frame: the receiver checks
   * it); a frame is the receiver's only until `receive` returns (a TCP wire reuses its buffer: Note
   * [stream framing]). `error` gets what arrived but could not be read at all, or what broke the wire
   * (a lost connection), after which nothing more arrives.
   */
  listen(receive: (raw: unknown) => void, error: (cause: Error) => void): void;
  /**
   * The storage pool of the host this end belongs to, for a wire that takes large tensors over: it
   * gives their buffers back to it once written, and receives large tensors into its free buffers
   * (Note [tensors beside the frame]).
   */
  usePool?(pool: StoragePool): void;
  /** Envelopes of another runtime (another cluster id) this end dropped on receipt, where it can tell. */
  readonly dropped?: number;
  /** Stops sending and receiving, at both ends; idempotent. */
  close(): void;
}
