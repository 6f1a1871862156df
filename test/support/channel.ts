// Two hosts' ends of a real MessageChannel, as Links: worker 0 sends, worker 1 decodes what arrives
// (through its ring when the sender uses one: Note [tensor ring]).
import { MessageChannel } from 'node:worker_threads';
import type { Message } from '../../src/actor/host.ts';
import type { ProtocolError } from '../../src/errors.ts';
import { decodeHostInputs } from '../../src/protocol/batch-reader.ts';
import type { Limits } from '../../src/protocol/envelope.ts';
import { Link } from '../../src/protocol/link.ts';
import { portWire } from '../../src/protocol/port-wire.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';

const open: Link[] = [];

/** An activation message of step 1 carrying `tensor`. */
export const activation = (tensor: Tensor, node = 5): Message => ({
  kind: 'activation',
  step: 1,
  mb: 0,
  replica: 0,
  node,
  tensor,
});

/** Worker 0's end and worker 1's end of a real MessageChannel; `next` resolves with what worker 1 receives next, decoded. */
export function channel(limits: Limits) {
  const { port1, port2 } = new MessageChannel();
  const errors: ProtocolError[] = [];
  const arrivals: ((messages: Message[]) => void)[] = [];
  const sender = new Link(
    portWire(port1),
    0,
    1,
    () => 0,
    () => {},
    (e) => errors.push(e),
  );
  const raws: unknown[] = [];
  const receiver = new Link(
    portWire(port2),
    1,
    0,
    () => 0,
    (link, raw) => {
      raws.push(raw);
      arrivals.shift()!(decodeHostInputs(raw, link.edgeIn, 0, limits, link.ringIn).messages as Message[]);
    },
    (e) => errors.push(e),
  );
  const next = () => new Promise<Message[]>((resolve) => arrivals.push(resolve));
  open.push(sender, receiver);
  return { sender, receiver, next, errors, raws };
}

/** Closes every channel made so far (after each test). */
export function closeChannels(): void {
  for (const l of open.splice(0)) l.close();
}
