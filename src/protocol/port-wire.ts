import type { MessagePort } from 'node:worker_threads';
import type { Wire } from './wire.ts';

/** A MessagePort as a wire: envelopes by structured clone, their tensors transferred, never copied. */
export function portWire(port: MessagePort): Wire {
  return {
    name: 'MessagePort',
    post: (envelope, transfer) => port.postMessage(envelope, transfer),
    postBytes: (frame) => port.postMessage(frame, [frame.buffer]),
    listen(receive, error) {
      port.on('message', receive);
      port.on('messageerror', error);
    },
    close: () => port.close(),
  };
}
