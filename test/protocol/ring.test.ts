// Note [tensor ring]: large tensors between threads through a link's SharedArrayBuffer ring.
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { BatchWriter, SMALL_TENSOR_BYTES } from '../../src/protocol/batch.ts';
import { decodeHostInputs } from '../../src/protocol/batch-reader.ts';
import { COORDINATOR, type Envelope } from '../../src/protocol/envelope.ts';
import { Link } from '../../src/protocol/link.ts';
import { portWire } from '../../src/protocol/port-wire.ts';
import { MAX_RING_BYTES, MIN_RING_BYTES, RingReader, RingWriter } from '../../src/protocol/ring.ts';
import { installPool, StoragePool } from '../../src/tensor/pool.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { activation, channel, closeChannels } from '../support/channel.ts';

const limits = { nodes: 10, replicas: 1, workers: 2 };
const EDGE = 'worker 0 -> worker 1';

/** A float32 tensor of `n` elements whose bit patterns are `seed + i`, NaN payloads and -0 among them. */
function words32(n: number, seed: number): Tensor {
  const data = new Float32Array(n);
  const bits = new Uint32Array(data.buffer);
  for (let i = 0; i < n; i++) bits[i] = (seed + i * 2654435761) >>> 0;
  bits[0] = 0x7fc00001;
  bits[1] = 0x80000000;
  return new Tensor('float32', [n], data);
}

function words64(n: number, seed: number): Tensor {
  const data = new Float64Array(n);
  const bits = new BigUint64Array(data.buffer);
  for (let i = 0; i < n; i++) bits[i] = BigInt.asUintN(64, BigInt(seed + i) * 0x9e3779b97f4a7c15n);
  bits[0] = 0xfff4000000000abcn;
  return new Tensor('float64', [n], data);
}

/** A tensor's bytes, to compare bit for bit (NaN payloads and -0 included). */
const bits = (t: Tensor) =>
  Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64');

/** A writer with a ring and a reader, as a link between two hosts has them, without a port. */
function pair() {
  const writer = new BatchWriter(EDGE);
  writer.ring = new RingWriter();
  const reader = new RingReader();
  const send = (...tensors: Tensor[]) => {
    for (const [i, t] of tensors.entries()) writer.add(activation(t, i));
    return writer.take(0, 0).envelope;
  };
  const receive = (e: Envelope) =>
    decodeHostInputs(e, EDGE, 0, limits, reader).messages.map((m) => (m as { tensor: Tensor }).tensor);
  return { send, receive };
}

const BIG = SMALL_TENSOR_BYTES / 4 + 1;

describe('the tensor ring (Note [tensor ring])', () => {
  it('a link to a host sends large tensors through the ring once it has one: bit for bit, nothing transferred, the sender keeps its storage', async () => {
    const { sender, receiver, next, raws, errors } = channel(limits);
    try {
      expect(receiver.ringIn).not.toBeNull();
      for (let round = 0; round < 4; round++) {
        const sent = [words32(BIG + round, round), words64(BIG, round), words32(3, round)];
        const expected = sent.map(bits);
        const arrived = next();
        for (const [i, t] of sent.entries()) sender.push(activation(t, i));
        const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
        expect(got.map(bits)).toEqual(expected);
        const raw = raws[round] as Envelope;
        if (round === 0) {
          // No ring yet: transferred, and a ring is made for the next envelope.
          expect(raw.buffers).toHaveLength(2);
          expect(raw.ring).toBeUndefined();
          expect(sent[0]!.data.byteLength).toBe(0);
        } else {
          expect(raw.buffers).toHaveLength(0);
          expect(raw.ring!.at).toHaveLength(2);
          // Announced with the first envelope that uses it, not again.
          expect(raw.ring!.buffer instanceof SharedArrayBuffer).toBe(round === 1);
          expect(sent.map(bits)).toEqual(expected);
        }
      }
      expect(errors).toEqual([]);
    } finally {
      closeChannels();
    }
  });

  it('the coordinator neither sends nor takes a ring: its links transfer as before', () => {
    const { port1, port2 } = new MessageChannel();
    const toCoordinator = new Link(
      portWire(port1),
      0,
      COORDINATOR,
      () => 0,
      () => {},
      () => {},
    );
    const atCoordinator = new Link(
      portWire(port2),
      COORDINATOR,
      0,
      () => 0,
      () => {},
      () => {},
    );
    expect(toCoordinator.ringIn).not.toBeNull();
    expect(atCoordinator.ringIn).toBeNull();
    toCoordinator.close();
    atCoordinator.close();
  });

  it('a full ring: the tensor is transferred and nothing waits; the writing wraps to the front once the receiver frees it', () => {
    const { send, receive } = pair();
    const n = (300 * 1024) / 4;
    const first = send(words32(n, 1));
    expect(first.buffers).toHaveLength(1);
    // The ring (1 MiB) holds three of them before the receiver frees anything; the fourth is transferred.
    const envelopes = [2, 3, 4, 5].map((s) => ({ e: send(words32(n, s)), s }));
    expect(envelopes.map(({ e }) => e.ring?.at[0] ?? -1)).toEqual([0, 300 * 1024, 600 * 1024, -1]);
    expect(envelopes[3]!.e.buffers).toHaveLength(1);
    for (const { e, s } of [{ e: first, s: 1 }, ...envelopes])
      expect(receive(e).map(bits)).toEqual([bits(words32(n, s))]);
    // Freed: the next one goes back to the front (it does not fit after 900 KiB).
    const again = send(words32(n, 6));
    expect(again.ring!.at).toEqual([0]);
    expect(receive(again).map(bits)).toEqual([bits(words32(n, 6))]);
  });

  it('an envelope refused halfway still frees its room: the ring is not left short', () => {
    const { send, receive } = pair();
    const n = (300 * 1024) / 4;
    receive(send(words32(n, 1)));
    const refused = send(words32(n, 2));
    expect(refused.ring!.at).toEqual([0]);
    // A trailing offset: refused after its tensor was copied out.
    expect(() => receive({ ...refused, ring: { ...refused.ring!, at: [0, 0] } })).toThrow(ProtocolError);
    send(words32(n, 3));
    send(words32(n, 4));
    // Freed up to the refused envelope's end, the fifth fits at the front; held, it would be transferred.
    const fifth = send(words32(n, 5));
    expect(fifth.ring?.at).toEqual([0]);
  });

  it('an envelope larger than half the ring makes a larger one, announced with the next envelope', () => {
    const { send, receive } = pair();
    const n = (3 << 20) / 4;
    const a = send(words32(n, 1));
    expect(a.buffers).toHaveLength(1);
    const b = send(words32(n, 2));
    expect(b.ring!.buffer!.byteLength - 8).toBe(8 << 20);
    expect(receive(a).map(bits)).toEqual([bits(words32(n, 1))]);
    expect(receive(b).map(bits)).toEqual([bits(words32(n, 2))]);
  });

  it('grows no larger than MAX_RING_BYTES: a tensor larger than that is always transferred', () => {
    const { send, receive } = pair();
    const n = (12 << 20) / 4;
    const a = send(words32(n, 1));
    const b = send(words32(n, 2));
    expect(b.ring!.buffer!.byteLength - 8).toBe(MAX_RING_BYTES);
    const huge = MAX_RING_BYTES / 4 + 2;
    const c = send(words32(huge, 3));
    const d = send(words32(huge, 4));
    expect([c.buffers.length, d.buffers.length, d.ring]).toEqual([1, 1, undefined]);
    for (const [e, s, m] of [
      [a, 1, n],
      [b, 2, n],
      [c, 3, huge],
      [d, 4, huge],
    ] as const)
      expect(receive(e).map(bits)).toEqual([bits(words32(m, s))]);
  });

  it('takes a free storage of the pool for a tensor, unrecorded (the host records it on delivery)', () => {
    const { send, receive } = pair();
    send(words32(BIG, 0));
    const e = send(words32(BIG, 1));
    const pool = new StoragePool({ minBytes: 1024 });
    const free = pool.allocate('float32', BIG, false);
    pool.recycle(new Set());
    expect(pool.arenaSize).toBe(0);
    installPool(pool);
    try {
      const [t] = receive(e);
      expect(t!.data.buffer).toBe(free.buffer);
      expect(pool.hits).toBe(1);
      expect(pool.arenaSize).toBe(0);
      expect(bits(t!)).toEqual(bits(words32(BIG, 1)));
    } finally {
      installPool(null);
    }
  });

  describe('a receiver refuses a bad ring mark with a ProtocolError naming the edge', () => {
    const ringed = () => {
      const { send } = pair();
      send(words32(BIG, 0));
      return send(words32(BIG, 1), words32(BIG, 2));
    };
    const refuse = (e: unknown, pattern: RegExp, reader: RingReader | null = new RingReader()) => {
      let err: unknown;
      try {
        decodeHostInputs(e, EDGE, 0, limits, reader);
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as Error).message).toMatch(new RegExp(`^${EDGE}: envelope.*${pattern.source}`));
    };

    it('on a link without a ring', () => refuse(ringed(), /no ring/, null));
    it('a first use without the ring', () => {
      const e = ringed();
      refuse({ ...e, ring: { at: e.ring!.at, end: e.ring!.end } }, /ring.buffer with the first envelope/);
    });
    it('a ring that is not a SharedArrayBuffer of a power of two', () => {
      const e = ringed();
      refuse({ ...e, ring: { ...e.ring, buffer: new ArrayBuffer(8 + MIN_RING_BYTES) } }, /SharedArrayBuffer/);
      refuse(
        { ...e, ring: { ...e.ring, buffer: new SharedArrayBuffer(8 + 3 * MIN_RING_BYTES) } },
        /power of two/,
      );
    });
    it('an offset outside the ring, or not a multiple of 8', () => {
      const e = ringed();
      refuse({ ...e, ring: { ...e.ring, at: [0, MIN_RING_BYTES - 8] } }, /ring offset/);
      refuse({ ...e, ring: { ...e.ring, at: [0, 4] } }, /ring offset/);
      refuse({ ...e, ring: { ...e.ring, at: [0, '8'] } }, /ring offset/);
    });
    it('too few or too many offsets', () => {
      const e = ringed();
      refuse({ ...e, ring: { ...e.ring, at: [0] } }, /ring.at\[1\]/);
      refuse({ ...e, ring: { ...e.ring, at: [...e.ring!.at, 0] } }, /trailing offsets/);
    });
  });
});
