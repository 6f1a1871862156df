import { ProtocolError } from '../errors.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { BatchWriter } from './batch.ts';
import { edgeName } from './codec.ts';
import { COORDINATOR, type Envelope, type HostInput, type HostOutput } from './envelope.ts';
import { RingReader, RingWriter } from './ring.ts';
import type { Wire } from './wire.ts';

// Note [flush cadence]
// A link sends what a turn queued in one envelope, at the end of the turn (a microtask), or as soon as
// MAX_BATCH messages are queued. A host's turn can make hundreds of messages for its peer; sent in
// chunks, the peer starts on the first while this host makes the rest, so the two workers overlap
// instead of taking turns: on a lane graph placed per node over 2 workers, chunks of 64 carried about
// 1.5x the actor messages/s of one envelope per turn. Smaller chunks pay an envelope's fixed costs (a
// post and a wake-up) too often: 32 was faster on a small lane graph and slower on the million-node
// one (figures: docs/measurements.md). A shell also sends what is queued for other hosts before a
// task that takes long (Note [long tasks] in src/runtime/host-shell.ts).

/** Messages queued on a link before it sends them without waiting for the end of the turn. */
export const MAX_BATCH = 64;

/**
 * One end of a wire carrying envelopes between two parties (workers, or a worker and the
 * coordinator), whatever the wire is (wire.ts). Messages are encoded when pushed (so a bad tensor
 * fails at the effect that made it) and sent in columnar envelopes (Note [columnar envelope]), one per
 * event-loop turn or per MAX_BATCH messages (Note [flush cadence]); what arrives is handed to
 * `receive` undecoded (the receiver knows what it accepts).
 */
export class Link {
  /** 'worker 0 -> worker 1', this end first. */
  readonly edgeOut: string;
  readonly edgeIn: string;
  private readonly batch: BatchWriter;
  private scheduled = false;
  private closed = false;
  /**
   * The ring this end receives large tensors through, or null (Note [tensor ring]): on a wire whose
   * ends share memory, at a host (the coordinator keeps no storage pool to copy them into).
   */
  readonly ringIn: RingReader | null;
  /** Runs every post, when set: a trace times them ('post' marks, Note [step marks]). */
  aroundPost: ((post: () => void) => void) | null = null;

  constructor(
    readonly wire: Wire,
    readonly self: number,
    readonly peer: number,
    private readonly gen: () => number,
    receive: (link: Link, raw: unknown) => void,
    private readonly onError: (error: ProtocolError) => void,
  ) {
    this.edgeOut = edgeName(self, peer);
    this.edgeIn = edgeName(peer, self);
    this.batch = new BatchWriter(this.edgeOut);
    const shared = wire.sharesMemory === true;
    if (shared && peer !== COORDINATOR) this.batch.ring = new RingWriter();
    this.ringIn = shared && self !== COORDINATOR ? new RingReader() : null;
    wire.listen(
      (raw) => receive(this, raw),
      (err) =>
        onError(
          new ProtocolError(
            `${this.edgeIn}: a message could not be read from its ${wire.name}: ${err.message}`,
            { edge: this.edgeIn, phase: 'receive' },
            { cause: err },
          ),
        ),
    );
  }

  /** Large tensors copied because they did not own their buffer or appeared twice in one envelope. */
  get copies(): number {
    return this.batch.copies;
  }

  /**
   * Queues a message for this turn's envelope. Its tensor is handed over: copied into the envelope
   * when small, transferred when large (Note [columnar envelope]). `hold`: no flush is scheduled
   * for it; it leaves with the next message pushed without, or the next `flush`.
   */
  push(message: HostInput<Tensor> | HostOutput<Tensor>, hold = false): void {
    if (this.closed) return;
    this.batch.add(message);
    if (this.batch.count >= MAX_BATCH) this.flush();
    else if (!hold && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends what is queued now (before blocking the thread, for instance). */
  flush(): void {
    this.scheduled = false;
    if (this.batch.count === 0 || this.closed) return;
    const { envelope, transfer } = this.batch.take(this.gen(), this.self);
    try {
      if (this.aroundPost === null) this.wire.post(envelope, transfer);
      else this.aroundPost(() => this.wire.post(envelope, transfer));
    } catch (err) {
      this.onError(
        new ProtocolError(
          `${this.edgeOut}: an envelope could not be sent over its ${this.wire.name}: ${(err as Error).message}`,
          { edge: this.edgeOut },
          { cause: err },
        ),
      );
    }
  }

  /** Posts a value as it is, outside any envelope, or bytes as a frame (tests of the receiver's validation). */
  postRaw(value: unknown, transfer: ArrayBuffer[] = []): void {
    if (value instanceof Uint8Array) this.wire.postBytes(value as Uint8Array<ArrayBuffer>);
    else this.wire.post(value as Envelope, transfer);
  }

  close(): void {
    this.closed = true;
    // Dropped with what is queued: no ring to make for an envelope never sent.
    this.batch.ring = null;
    this.batch.take(0, this.self);
    this.wire.close();
  }
}
