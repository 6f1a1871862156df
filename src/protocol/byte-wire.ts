import { encodeFrame } from './frame.ts';
import type { Wire } from './wire.ts';

/**
 * Two connected ends of an in-memory wire that carries bytes only, as a network connection does:
 * each envelope is encoded into one frame when posted (Note [byte framing], Note [byte wires and
 * recycled storage]) and handed to the other end's listener in a later event-loop turn, in order.
 * The loopback cluster runs every host of a plan in one thread over these.
 */
export function bytePipe(): [Wire, Wire] {
  const a = new ByteEnd();
  const b = new ByteEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class ByteEnd implements Wire {
  readonly name = 'in-memory bytes';
  peer!: ByteEnd;
  private closed = false;
  private inbox: Uint8Array[] = [];
  private scheduled = false;
  private receive: ((raw: unknown) => void) | null = null;

  post(envelope: Parameters<Wire['post']>[0]): void {
    this.postBytes(encodeFrame(envelope));
  }

  postBytes(frame: Uint8Array<ArrayBuffer>): void {
    if (this.closed) return;
    this.peer.arrive(frame);
  }

  listen(receive: (raw: unknown) => void): void {
    // Bytes always arrive whole: nothing can fail before the receiver reads them.
    this.receive = receive;
    this.schedule();
  }

  close(): void {
    this.closed = this.peer.closed = true;
    this.inbox = this.peer.inbox = [];
  }

  private arrive(frame: Uint8Array): void {
    this.inbox.push(frame);
    this.schedule();
  }

  /** Frames wait for a listener, as a port's messages do. */
  private schedule(): void {
    if (this.scheduled || this.receive === null || this.inbox.length === 0) return;
    this.scheduled = true;
    setImmediate(() => this.deliver());
  }

  private deliver(): void {
    this.scheduled = false;
    const frames = this.inbox;
    this.inbox = [];
    for (const frame of frames) {
      if (this.closed) return;
      this.receive!(frame);
    }
  }
}
