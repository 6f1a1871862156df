import type { MessagePort } from 'node:worker_threads';
import type { Wire } from './wire.ts';

/**
 * A MessagePort as a wire: envelopes by structured clone, their large tensors transferred or, to a
 * host, written into the link's ring (Note [tensor ring]).
 */
export function portWire(port: MessagePort): Wire {
  return {
    name: 'MessagePort',
    sharesMemory: true,
    post: (envelope, transfer) => port.postMessage(envelope, transfer),
    postBytes: (frame) => port.postMessage(frame, [frame.buffer]),
    listen(receive, error) {
      port.on('message', receive);
      port.on('messageerror', error);
    },
    close: () => port.close(),
  };
}
