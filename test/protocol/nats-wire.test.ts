// The NATS wire (Note [NATS wire order], Note [NATS chunks]) through a real nats-server: frames in
// order and bit for bit, chunked and put back together; every broken chunk stream a ProtocolError;
// a lost server reported at once; nothing left behind by close.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, expect, it } from 'vitest';
import { InputError, ProtocolError } from '../../src/errors.ts';
import { decodeHostInputs } from '../../src/protocol/batch-reader.ts';
import type { HostInput, Limits } from '../../src/protocol/envelope.ts';
import { Link } from '../../src/protocol/link.ts';
import { dataSubject, type NatsWire, openNatsWire, splitFrame } from '../../src/protocol/nats-wire.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { describeNats, natsMonitorUrl, natsUrl, privateNatsServer } from '../support/nats.ts';

const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
const MiB = 1 << 20;
/** How long a lost server may take to fail a wire: a bound on hanging, not a speed. */
const LOST_CONNECTION_DEADLINE_MS = 10_000;

const connections: NatsConnection[] = [];
const wires: NatsWire[] = [];
const links: Link[] = [];
afterEach(async () => {
  for (const l of links.splice(0)) l.close();
  for (const w of wires.splice(0)) w.close();
  for (const nc of connections.splice(0)) await nc.close();
});

async function natsConnection(url = natsUrl()!): Promise<NatsConnection> {
  const nc = await connect({ servers: url });
  connections.push(nc);
  return nc;
}

let clusters = 0;
/** A cluster name of its own for each test: subjects never meet across tests. */
const freshCluster = () => `wire-test-${process.pid}-${clusters++}`;

/** What one wire receives: frames, errors, and a wait for the n-th frame or the first error. */
function receiver(wire: NatsWire) {
  const frames: Uint8Array[] = [];
  const errors: Error[] = [];
  const waiting: (() => void)[] = [];
  const wake = () => {
    for (const f of waiting.splice(0)) f();
  };
  wire.listen(
    (raw) => {
      frames.push(raw as Uint8Array);
      wake();
    },
    (err) => {
      errors.push(err);
      wake();
    },
  );
  const until = async (done: () => boolean) => {
    while (!done()) await new Promise<void>((resolve) => waiting.push(resolve));
  };
  return {
    frames,
    errors,
    frame: (n: number) => until(() => frames.length >= n),
    error: () => until(() => errors.length > 0),
  };
}

/** Worker 0's end on one connection and worker 1's on another, both open (subscribed). */
async function pair(options: { maxFrameBytes?: number; clusterId?: number } = {}) {
  const [nc0, nc1] = [await natsConnection(), await natsConnection()];
  const base = { cluster: freshCluster(), clusterId: options.clusterId ?? 7, ...options };
  const w0 = await openNatsWire(nc0, { ...base, self: 0, peer: 1 });
  const w1 = await openNatsWire(nc1, { ...base, self: 1, peer: 0 });
  wires.push(w0, w1);
  return { nc0, nc1, w0, w1, cluster: base.cluster };
}

function randomBytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/**
 * The sizes of the messages on `subject` that reach `nc` (subscribed once this resolves), and a wait
 * for the n-th: then everything the server sent `nc` before it has been read too (a flush), including
 * the copies for the wires on `nc`.
 */
async function tap(nc: NatsConnection, subject: string) {
  const sizes: number[] = [];
  const waiting: (() => void)[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      sizes.push(msg.data.length);
      for (const f of waiting.splice(0)) f();
    },
  });
  await nc.flush();
  return {
    sizes,
    async until(n: number) {
      while (sizes.length < n) await new Promise<void>((resolve) => waiting.push(resolve));
      sub.unsubscribe();
      await nc.flush();
    },
  };
}

describeNats('a NATS wire', () => {
  it('carries frames bit for bit and in order, small ones whole and one of 5 MiB in chunks below max_payload', async () => {
    const { nc1, w0, w1 } = await pair();
    const got = receiver(w1);
    const chunks = await tap(nc1, w0.subjectOut);
    const sizes = [40, 8, 1000, 5 * MiB + 13, 64, MiB - 20, MiB - 19, 3];
    const sent = sizes.map((n, i) => randomBytes(n, i + 1));
    for (const frame of sent) w0.postBytes(frame.slice());
    await got.frame(sent.length);
    expect(got.errors).toEqual([]);
    expect(got.frames.map((f, i) => Buffer.from(f).equals(sent[i]!))).toEqual(sent.map(() => true));
    // 5 MiB + 13 in 6 chunks of 1 MiB - 20 bytes and a head; max_payload - 20 bytes in one chunk, one more in two.
    expect(nc1.info!.max_payload).toBe(MiB);
    const count = 1 + 1 + 1 + 6 + 1 + 1 + 2 + 1;
    await chunks.until(count);
    expect(chunks.sizes).toHaveLength(count);
    expect(Math.max(...chunks.sizes)).toBe(MiB);
  });

  it('a link over two NATS wires carries real envelopes that decodeHostInputs accepts, a large tensor chunked', async () => {
    const { w0, w1 } = await pair();
    const arrivals: HostInput<Tensor>[][] = [];
    const errors: Error[] = [];
    let arrived = () => {};
    const all = new Promise<void>((resolve) => (arrived = resolve));
    const receive = (link: Link, raw: unknown) => {
      arrivals.push(decodeHostInputs(raw, link.edgeIn, 0, limits).messages);
      if (arrivals.flat().length === 3) arrived();
    };
    links.push(
      new Link(
        w1,
        1,
        0,
        () => 2,
        receive,
        (e) => errors.push(e),
      ),
    );
    const sender = new Link(
      w0,
      0,
      1,
      () => 2,
      () => {},
      (e) => errors.push(e),
    );
    links.push(sender);
    const big = new Float32Array((3 * MiB) / 4).map((_, i) => i - 0.5);
    const small = new Float32Array(new Uint32Array([0x7fc00001, 0x80000000, 1, 0x3f800000]).buffer);
    const sent: HostInput<Tensor>[] = [
      { kind: 'activation', step: 4, mb: 1, replica: 0, node: 5, tensor: new Tensor('float32', [4], small) },
      {
        kind: 'gradient',
        step: 4,
        mb: 0,
        replica: 1,
        node: 5,
        consumer: 7,
        slot: 1,
        tensor: new Tensor('float32', [big.length], big.slice()),
      },
    ];
    // Two envelopes: one flushed by hand with a tensor of 3 MiB, one at the end of the turn.
    sender.push(sent[0]!);
    sender.push(sent[1]!);
    sender.flush();
    sender.push({ kind: 'param', step: 4, node: 2, tensor: new Tensor('float32', [4], small.slice()) });
    await all;
    expect(errors).toEqual([]);
    const got = arrivals.flat() as { tensor: Tensor }[];
    expect(got.map((m) => m.tensor.shape)).toEqual([[4], [big.length], [4]]);
    const bits = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    expect(bits(got[0]!.tensor).equals(Buffer.from(small.buffer))).toBe(true);
    expect(bits(got[1]!.tensor).equals(Buffer.from(big.buffer))).toBe(true);
    expect(arrivals.flat().map((m) => m.kind)).toEqual(['activation', 'gradient', 'param']);
  });

  it('refuses a chunk stream that lost, reordered or oversized a chunk with a ProtocolError, and delivers nothing after it', async () => {
    const frame = randomBytes(3000, 9);
    // Three chunks of 1000 bytes each (max_payload 1020), numbered 0, 1, 2.
    const chunks = splitFrame(frame, 7, 0, 1020);
    expect(chunks).toHaveLength(3);
    const cases: [string, Uint8Array[], RegExp][] = [
      [
        'reordered',
        [chunks[0]!, chunks[2]!, chunks[1]!],
        /expected chunk 1 \(a chunk was lost or reordered\), found chunk 2/,
      ],
      [
        'missing',
        [chunks[1]!, chunks[2]!],
        /expected chunk 0 \(a chunk was lost or reordered\), found chunk 1/,
      ],
      [
        'declared past the limit',
        splitFrame(randomBytes(5000, 3), 7, 0, 1020).slice(0, 1),
        /expected chunk 0: a frame of 1 to 4096 bytes, found 5000 bytes/,
      ],
      [
        'declared 4 GiB',
        [withWord(chunks[0]!, 4, 2 ** 32 - 1)],
        /a frame of 1 to 4096 bytes, found 4294967295 bytes/,
      ],
      [
        'declaring another frame size',
        [chunks[0]!, withWord(chunks[1]!, 4, 1500)],
        /expected chunk 1: the 3000 bytes of its frame, found 1500 bytes/,
      ],
      [
        'longer than declared',
        [withWord(chunks[0]!, 4, 600)],
        /expected chunk 0: 1 to 600 bytes of its frame, found 1000 bytes/,
      ],
      ['without a head', [new Uint8Array(12)], /expected a chunk of at least 20 bytes, found 12/],
      ['with another magic', [withWord(chunks[0]!, 0, 1)], /expected the magic 'BFNC', found 0x1/],
    ];
    for (const [what, bad, message] of cases) {
      const { nc0, nc1, w1 } = await pair({ maxFrameBytes: 4096 });
      const got = receiver(w1);
      const arrived = await tap(nc1, w1.subjectIn);
      // The bad chunks from worker 0's connection, then a good frame numbered where a sound stream would be.
      const after = splitFrame(randomBytes(100, 1), 7, bad.length, 1020);
      for (const c of [...bad, ...after]) nc0.publish(w1.subjectIn, c);
      await got.error();
      await arrived.until(bad.length + after.length);
      expect(got.errors, what).toHaveLength(1);
      const err = got.errors[0]!;
      expect(err, what).toBeInstanceOf(ProtocolError);
      expect(err.message, what).toMatch(message);
      expect((err as ProtocolError).context['edge']).toBe('worker 0 -> worker 1');
      expect(got.frames, what).toEqual([]);
    }
  });

  it('drops and counts chunks of another cluster id, and carries its own frames past them', async () => {
    const { nc0, w0, w1 } = await pair({ clusterId: 7 });
    const got = receiver(w1);
    for (const c of splitFrame(randomBytes(2500, 5), 8, 0, 1020)) nc0.publish(w1.subjectIn, c);
    w0.postBytes(randomBytes(64, 6));
    await got.frame(1);
    expect(w1.dropped).toBe(3);
    expect(got.errors).toEqual([]);
    expect(Buffer.from(got.frames[0]!).equals(randomBytes(64, 6))).toBe(true);
  });

  it('two links on one connection do not mix', async () => {
    const [hub, nc1, nc2] = [await natsConnection(), await natsConnection(), await natsConnection()];
    const cluster = freshCluster();
    const open = async (nc: NatsConnection, self: number, peer: number) => {
      const wire = await openNatsWire(nc, { cluster, clusterId: 1, self, peer });
      wires.push(wire);
      return wire;
    };
    const [h1, h2] = [await open(hub, 0, 1), await open(hub, 0, 2)];
    const [w1, w2] = [await open(nc1, 1, 0), await open(nc2, 2, 0)];
    const [at1, at2, back1, back2] = [receiver(w1), receiver(w2), receiver(h1), receiver(h2)];
    const frame = (to: number, i: number) => randomBytes(1500 + i, to * 1000 + i);
    for (let i = 0; i < 20; i++) {
      // Interleaved, some of two chunks: each link keeps its own numbering and reassembly.
      h1.postBytes(frame(1, i));
      h2.postBytes(frame(2, i));
      w1.postBytes(frame(11, i));
      w2.postBytes(frame(12, i));
    }
    await Promise.all([at1.frame(20), at2.frame(20), back1.frame(20), back2.frame(20)]);
    const want = (to: number) => Array.from({ length: 20 }, (_, i) => [...frame(to, i)]);
    expect(at1.frames.map((f) => [...f])).toEqual(want(1));
    expect(at2.frames.map((f) => [...f])).toEqual(want(2));
    expect(back1.frames.map((f) => [...f])).toEqual(want(11));
    expect(back2.frames.map((f) => [...f])).toEqual(want(12));
    expect([at1, at2, back1, back2].flatMap((r) => r.errors)).toEqual([]);
  });

  it('reports a killed server at once on every open wire (and not on a closed one), then posts nothing and closes cleanly', async () => {
    const server = await privateNatsServer();
    try {
      const [nc0, nc1] = [await natsConnection(server.url), await natsConnection(server.url)];
      const cluster = freshCluster();
      const w0 = await openNatsWire(nc0, { cluster, clusterId: 1, self: 0, peer: 1 });
      const w1 = await openNatsWire(nc1, { cluster, clusterId: 1, self: 1, peer: 0 });
      const gone = await openNatsWire(nc0, { cluster, clusterId: 1, self: 0, peer: 2 });
      wires.push(w0, w1, gone);
      const [r0, r1, rGone] = [receiver(w0), receiver(w1), receiver(gone)];
      w0.postBytes(randomBytes(100, 1));
      await r1.frame(1);
      gone.close();
      const killed = Date.now();
      await server.kill();
      await Promise.all([r0.error(), r1.error()]);
      const elapsed = Date.now() - killed;
      for (const r of [r0, r1]) {
        expect(r.errors).toHaveLength(1);
        expect(r.errors[0]).toBeInstanceOf(ProtocolError);
        expect(r.errors[0]!.message).toMatch(/^the connection to 127\.0\.0\.1:\d+ was lost/);
      }
      // A deadline on failure detection, generous for a loaded machine: a lost server must not hang the wire.
      expect(elapsed).toBeLessThan(LOST_CONNECTION_DEADLINE_MS);
      expect(rGone.errors).toEqual([]);
      // A failed wire sends nothing and fails no further; its close does not throw.
      w0.postBytes(randomBytes(100, 2));
      w0.close();
      w1.close();
      expect(r0.errors).toHaveLength(1);
    } finally {
      for (const nc of connections.splice(0)) await nc.close();
      await server.stop();
    }
  });

  it('closing leaves no subscription and no timer behind, and closes the other end too', async () => {
    const { nc0, nc1, w0, w1 } = await pair();
    const got = receiver(w1);
    const subscriptions = async (nc: NatsConnection) => {
      await nc.flush();
      const res = await fetch(`${natsMonitorUrl()}/connz?subs=1&cid=${nc.info!.client_id}`);
      const body = (await res.json()) as { connections: { subscriptions_list?: string[] }[] };
      return body.connections[0]!.subscriptions_list ?? [];
    };
    expect(await subscriptions(nc0)).toEqual([w0.subjectIn]);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    // The connection's status listeners (nats-core internals: the wire stops its iterator by hand).
    const listeners = (nc: NatsConnection) =>
      (nc as unknown as { protocol: { listeners: unknown[] } }).protocol.listeners.length;
    const before = timers();
    expect([listeners(nc0), listeners(nc1)]).toEqual([1, 1]);
    const closing = await tap(nc1, w1.subjectIn);
    w0.close();
    // The close chunk reaches worker 1's end: it unsubscribes and sends nothing more.
    await closing.until(1);
    expect(await subscriptions(nc0)).toEqual([]);
    expect(await subscriptions(nc1)).toEqual([]);
    // Neither a post on the end closed by its peer nor a second close publishes anything.
    const published = () => nc0.stats().outMsgs + nc1.stats().outMsgs;
    const count = published();
    w1.postBytes(randomBytes(10, 1));
    w0.close();
    expect(published()).toBe(count);
    expect(got.errors).toEqual([]);
    expect(timers()).toBeLessThanOrEqual(before);
    expect([listeners(nc0), listeners(nc1)]).toEqual([0, 0]);
  });

  it('refuses a subject token with dots or wildcards, and a frame past its limit before sending it', async () => {
    expect(dataSubject('c-1_x', 0, -1)).toBe('backflow.c-1_x.data.0.coordinator');
    for (const bad of ['a.b', 'a*', '>', '', 'a b', 'x'.repeat(65)])
      expect(() => dataSubject(bad, 0, 1), bad).toThrow(InputError);
    expect(() => dataSubject('c', -2, 1)).toThrow(InputError);
    const { w0 } = await pair({ maxFrameBytes: 100 });
    expect(() => w0.postBytes(new Uint8Array(101))).toThrow(
      /a frame of 101 bytes cannot be sent \(1 to 100 bytes\)/,
    );
  });
});

/** A copy of `chunk` with head word `i` set to `value`. */
function withWord(chunk: Uint8Array, i: number, value: number): Uint8Array {
  const copy = chunk.slice();
  new DataView(copy.buffer).setUint32(i * 4, value, true);
  return copy;
}
