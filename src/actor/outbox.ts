import type { ValueEngine } from './engine.ts';
import type { HostEffect, HostStats, Message } from './host-types.ts';

/**
 * What leaves a host, and its counters: a value whose storage something here still references leaves
 * as a copy (the original may be transferred, and a transferred storage is gone).
 */
export class Outbox<T> {
  constructor(
    private readonly engine: ValueEngine<T>,
    private readonly counters: HostStats,
  ) {}

  /** A value leaving this host: the original if nothing here still references its storage, else a copy. */
  giveAway(value: T): T {
    return this.engine.isShared(value) ? this.copy(value) : value;
  }

  copy(value: T): T {
    this.counters.copies++;
    return this.engine.copy(value);
  }

  send(worker: number, message: Message<T>): HostEffect<T> {
    this.counters.remoteMessages++;
    this.counters.sentBytes += this.engine.bytes(message.tensor);
    return { kind: 'send', worker, message };
  }
}
