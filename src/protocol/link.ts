import type { MessagePort } from 'node:worker_threads';
import { ProtocolError } from '../errors.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { edgeName, encodeMessage, Transfers } from './codec.ts';
import { type HostInput, type HostOutput, PROTOCOL_VERSION } from './envelope.ts';

/**
 * One end of a MessagePort carrying envelopes between two parties (workers, or a worker and the
 * coordinator): the link of DESIGN.md section 6. Messages are encoded when pushed (so a bad tensor
 * fails at the effect that made it) and sent as one envelope per event-loop turn; what arrives is
 * handed to `receive` undecoded (the receiver knows what it accepts).
 */
export class PortLink {
  /** 'worker 0 -> worker 1', this end first. */
  readonly edgeOut: string;
  readonly edgeIn: string;
  /** Tensors copied because they did not own their buffer or appeared twice in one envelope. */
  copies = 0;
  private batch: unknown[] = [];
  private tx = new Transfers();
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly port: MessagePort,
    readonly self: number,
    readonly peer: number,
    private readonly gen: () => number,
    receive: (link: PortLink, raw: unknown) => void,
    private readonly onError: (error: ProtocolError) => void,
  ) {
    this.edgeOut = edgeName(self, peer);
    this.edgeIn = edgeName(peer, self);
    port.on('message', (raw) => receive(this, raw));
    port.on('messageerror', (err) =>
      onError(
        new ProtocolError(
          `${this.edgeIn}: a message could not be deserialized: ${err.message}`,
          { edge: this.edgeIn },
          { cause: err },
        ),
      ),
    );
  }

  /** Queues a message for this turn's envelope; its tensor is handed over (transferred). */
  push(message: HostInput<Tensor> | HostOutput<Tensor>): void {
    if (this.closed) return;
    this.batch.push(encodeMessage(message, this.tx, this.edgeOut));
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends what is queued now (before blocking the thread, for instance). */
  flush(): void {
    this.scheduled = false;
    if (this.batch.length === 0 || this.closed) return;
    const envelope = { v: PROTOCOL_VERSION, gen: this.gen(), from: this.self, messages: this.batch };
    const transfer = this.tx.list;
    this.copies += this.tx.copies;
    this.batch = [];
    this.tx = new Transfers();
    try {
      this.port.postMessage(envelope, transfer);
    } catch (err) {
      this.onError(
        new ProtocolError(
          `${this.edgeOut}: an envelope could not be sent: ${(err as Error).message}`,
          { edge: this.edgeOut },
          { cause: err },
        ),
      );
    }
  }

  /** Posts a value as it is, outside any envelope (tests of the receiver's validation). */
  postRaw(value: unknown, transfer: ArrayBuffer[] = []): void {
    this.port.postMessage(value, transfer);
  }

  close(): void {
    this.closed = true;
    this.batch = [];
    this.port.close();
  }
}
