// Note [stream framing] and Note [tcp handshake]: frames over TCP on 127.0.0.1, cut back bit for bit
// whatever the chunks, in order under backpressure; every connection that is not the runtime's is
// refused before any frame is read; a broken connection is reported, never a hang.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/actor/host.ts';
import { InputError, ProtocolError } from '../../src/errors.ts';
import { SMALL_TENSOR_BYTES } from '../../src/protocol/batch.ts';
import { decodeHostInputs } from '../../src/protocol/batch-reader.ts';
import { COORDINATOR, type HostInput, type Limits, PROTOCOL_VERSION } from '../../src/protocol/envelope.ts';
import { BLOB_BIT, FrameCutter, MAX_FRAME_BYTES } from '../../src/protocol/frame-cutter.ts';
import { Link } from '../../src/protocol/link.ts';
import {
  connectTcp,
  encodeHello,
  type Hello,
  type ListenOptions,
  MAX_HELLO_BYTES,
  TcpListener,
} from '../../src/protocol/tcp-listener.ts';
import { tcpPipe } from '../../src/protocol/tcp-pipes.ts';
import type { TcpWire } from '../../src/protocol/tcp-wire.ts';
import { installPool, StoragePool } from '../../src/tensor/pool.ts';
import { Tensor } from '../../src/tensor/tensor.ts';

const MiB = 2 ** 20;
const secret = randomBytes(32);
const identity = { cluster: 'test', secret };

/** Resources a test opened, closed after it: wires (awaited until their sockets close), listeners, raw sockets. */
const wires: TcpWire[] = [];
const listeners: TcpListener[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  installPool(null);
  for (const l of listeners.splice(0)) l.close();
  await Promise.all(
    sockets
      .splice(0)
      .map((s) => (s.closed ? null : new Promise((resolve) => s.once('close', resolve).destroy()))),
  );
  const open = wires.splice(0);
  for (const w of open) w.close();
  await Promise.all(open.map((w) => w.whenClosed()));
});

async function pipe(): Promise<[TcpWire, TcpWire]> {
  const ends = await tcpPipe();
  wires.push(...ends);
  return ends;
}

/** A listener whose refusals are collected; `refused()` waits for the next one. */
async function listen(options: Partial<ListenOptions> = {}) {
  const refusals: ProtocolError[] = [];
  const waiting: ((e: ProtocolError) => void)[] = [];
  const listener = await TcpListener.listen({
    ...identity,
    ...options,
    onRefused: (e) => (waiting.length > 0 ? waiting.shift()!(e) : refusals.push(e)),
  });
  listeners.push(listener);
  const refused = () =>
    refusals.length > 0
      ? Promise.resolve(refusals.shift()!)
      : new Promise<ProtocolError>((resolve) => waiting.push(resolve));
  const accept = async (from: number, to: number) => {
    const wire = await listener.accept(from, to);
    wires.push(wire);
    return wire;
  };
  return { listener, refused, accept };
}

/** What a wire receives, and a wait for the n-th frame or the first error. */
function collect(wire: TcpWire) {
  const frames: Uint8Array[] = [];
  const errors: Error[] = [];
  const checks: (() => boolean)[] = [];
  const check = () => {
    for (let i = checks.length - 1; i >= 0; i--) if (checks[i]!()) checks.splice(i, 1);
  };
  const until = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      if (done()) resolve();
      else
        checks.push(() => {
          if (!done()) return false;
          resolve();
          return true;
        });
    });
  wire.listen(
    (raw) => {
      // A copy: a frame may be a view into the socket's chunk.
      frames.push((raw as Uint8Array).slice());
      check();
    },
    (err) => {
      errors.push(err);
      check();
    },
  );
  return {
    frames,
    errors,
    frame: (n: number) => until(() => frames.length >= n),
    error: async () => {
      await until(() => errors.length > 0);
      return errors[0]!;
    },
  };
}

/** A socket that says `hello` (or any bytes) to the listener, as a raw client. */
function raw(port: number, bytes: Uint8Array) {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  socket.on('error', () => {});
  socket.write(bytes);
  let got = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => (got = Buffer.concat([got, chunk])));
  const closed = new Promise<Buffer>((resolve) => socket.once('close', () => resolve(got)));
  /** The listener's 8-byte reply, once it is in. */
  const ok = () =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (got.length < 8) return;
        socket.off('data', check);
        resolve();
      };
      socket.on('data', check);
      check();
    });
  return { socket, closed, ok };
}

const hello = (h: Partial<Hello> = {}) => encodeHello({ ...identity, from: 1, to: 0, ...h });
const prefixed = (frame: Uint8Array) => {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, true);
  out.set(frame, 4);
  return out;
};
/** A frame whose bytes tell its index and length apart from any other's. */
const numbered = (i: number, size: number) => {
  const f = new Uint8Array(size);
  for (let k = 0; k < size; k++) f[k] = (i * 31 + k * 7 + (k >> 8)) & 0xff;
  if (size >= 4) new DataView(f.buffer).setUint32(0, i, true);
  return f;
};

describe('FrameCutter (Note [stream framing])', () => {
  const sizes = [1, 40, 7, 300, 3, 64];
  const frames = sizes.map((n, i) => numbered(i, n));
  const stream = Buffer.concat(frames.map(prefixed));

  it('cuts the same frames, in order, wherever the stream is cut into chunks', () => {
    const cuts = (chunks: Uint8Array[]) => {
      const cutter = new FrameCutter(1024, 'tcp test', 'worker 1 -> worker 0');
      const out: Uint8Array[] = [];
      for (const c of chunks) expect(cutter.push(c, (f) => out.push(f.slice()) > 0)).toBe('more');
      expect(cutter.partial).toBeNull();
      return out;
    };
    // One chunk, every cut into two, three-way cuts, and one byte at a time.
    expect(cuts([stream])).toEqual(frames);
    for (let a = 0; a <= stream.length; a++) {
      expect(cuts([stream.subarray(0, a), stream.subarray(a)])).toEqual(frames);
      const b = Math.min(stream.length, a + 5);
      expect(cuts([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)])).toEqual(frames);
    }
    expect(cuts([...stream].map((x) => Uint8Array.of(x)))).toEqual(frames);
  });

  it('hands a frame whole in its chunk on as a view, and copies a split one once', () => {
    const cutter = new FrameCutter(1024, 'tcp test', 'worker 1 -> worker 0');
    const out: Uint8Array[] = [];
    cutter.push(stream, (f) => out.push(f) > 0);
    expect(out.every((f) => f.buffer === stream.buffer)).toBe(true);
    // Frame 1 (40 bytes) starts at byte 9: cut after its first byte, it is copied; frame 2 is whole again.
    const split = new FrameCutter(1024, 'tcp test', 'worker 1 -> worker 0');
    const parts: Uint8Array[] = [];
    split.push(stream.subarray(0, 10), (f) => parts.push(f) > 0);
    expect(split.partial).toBe("1 of a frame's 40 bytes");
    split.push(stream.subarray(10, 60), (f) => parts.push(f) > 0);
    expect(parts).toEqual(frames.slice(0, 3));
    expect(parts.map((f) => f.buffer === stream.buffer)).toEqual([true, false, true]);
  });

  it('puts every split frame together in the one buffer it keeps: a frame is valid only while it is delivered', () => {
    const cutter = new FrameCutter(1024, 'tcp test', 'worker 1 -> worker 0');
    const copies: Uint8Array[] = [];
    const buffers = new Set<ArrayBufferLike>();
    // One byte at a time: every frame is split.
    for (const byte of stream)
      cutter.push(Uint8Array.of(byte), (f) => {
        buffers.add(f.buffer);
        return copies.push(f.slice()) > 0;
      });
    expect(copies).toEqual(frames);
    // Grown twice, for frames 1 (40 bytes) and 3 (300), then kept.
    expect(buffers.size).toBe(3);
  });

  it('refuses a declared length over the limit before allocating anything for it; 0 is the goodbye', () => {
    const cutter = new FrameCutter(100, 'tcp test', 'worker 1 -> worker 0');
    const delivered: Uint8Array[] = [];
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, MAX_FRAME_BYTES, true);
    const err = cutter.push(head, (f) => delivered.push(f) > 0);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).message).toMatch(
      /worker 1 -> worker 0.*a frame of 2147483647 bytes declared.*limit of 100/,
    );
    // No frame started: nothing was allocated, nothing delivered.
    expect(cutter.partial).toBeNull();
    expect(delivered).toEqual([]);
    expect(
      new FrameCutter(100, 'tcp', 'e').push(
        Buffer.concat([prefixed(frames[0]!), new Uint8Array(4)]),
        () => true,
      ),
    ).toBe('goodbye');
  });
});

describe('FrameCutter: tensors beside the frame (Note [tensors beside the frame])', () => {
  const blobbed = (size: number) => {
    const out = new Uint8Array(4 + size);
    new DataView(out.buffer).setUint32(0, BLOB_BIT + size, true);
    out.set(numbered(100 + size, size), 4);
    return out;
  };
  // Two blobs and their frame, a frame alone, a blob and its frame.
  const stream = Buffer.concat([
    blobbed(12),
    blobbed(33),
    prefixed(numbered(1, 20)),
    prefixed(numbered(2, 9)),
    blobbed(5),
    prefixed(numbered(3, 16)),
  ]);
  const want = [
    [numbered(1, 20), [numbered(112, 12), numbered(133, 33)]],
    [numbered(2, 9), []],
    [numbered(3, 16), [numbered(105, 5)]],
  ];

  it('hands each frame on with the blobs sent ahead of it, wherever the stream is cut; each blob is a buffer of its own', () => {
    const cuts = (chunks: Uint8Array[]) => {
      const cutter = new FrameCutter(1024, 'tcp test', 'worker 1 -> worker 0');
      const out: [Uint8Array, Uint8Array[]][] = [];
      for (const c of chunks)
        expect(
          cutter.push(c, (f, blobs) => {
            for (const b of blobs) expect(b).not.toBe(c.buffer);
            return out.push([f.slice(), blobs.map((b) => new Uint8Array(b))]) > 0;
          }),
        ).toBe('more');
      expect(cutter.partial).toBeNull();
      return out;
    };
    expect(cuts([stream])).toEqual(want);
    for (let a = 0; a <= stream.length; a++)
      expect(cuts([stream.subarray(0, a), stream.subarray(a)]), `cut at ${a}`).toEqual(want);
    expect(cuts([...stream].map((x) => Uint8Array.of(x)))).toEqual(want);
  });

  it('refuses a blob over the limit, blobs that pass it together, and an empty blob, before allocating', () => {
    const cutter = new FrameCutter(40, 'tcp test', 'worker 1 -> worker 0');
    const over = cutter.push(blobbed(41).subarray(0, 4), () => true);
    expect(over).toBeInstanceOf(ProtocolError);
    expect((over as ProtocolError).message).toMatch(/a blob of 41 bytes declared, over the limit of 40/);
    const sum = new FrameCutter(40, 'tcp test', 'worker 1 -> worker 0');
    expect(sum.push(blobbed(30), () => true)).toBe('more');
    expect(sum.partial).toBe('1 blobs without their frame');
    const err = sum.push(blobbed(11).subarray(0, 4), () => true);
    expect((err as ProtocolError).message).toMatch(/a blob of 11 bytes declared after 30 bytes of blobs/);
    const empty = new Uint8Array(4);
    new DataView(empty.buffer).setUint32(0, BLOB_BIT, true);
    expect(new FrameCutter(40, 'tcp', 'e').push(empty, () => true)).toBeInstanceOf(ProtocolError);
  });
});

describe('tcp wires on 127.0.0.1', () => {
  it('carry frames bit for bit and in order: large ones split across chunks, tiny ones coalesced', async () => {
    const [a, b] = await pipe();
    const inB = collect(b);
    const inA = collect(a);
    const sent = [
      numbered(0, 6 * MiB + 3),
      ...Array.from({ length: 2000 }, (_, i) => numbered(i + 1, 1 + (i % 9))),
    ];
    sent.push(numbered(9999, 3 * MiB));
    for (const f of sent) a.postBytes(f.slice());
    b.postBytes(numbered(7, 12));
    await inB.frame(sent.length);
    await inA.frame(1);
    expect(inB.frames.length).toBe(sent.length);
    for (const [i, f] of sent.entries()) expect(Buffer.compare(inB.frames[i]!, f), `frame ${i}`).toBe(0);
    expect(inA.frames).toEqual([numbered(7, 12)]);
    expect(inA.errors.concat(inB.errors)).toEqual([]);
  });

  it('a link over two tcp wires carries envelopes the host reader accepts, tensors bit for bit', async () => {
    const [a, b] = await pipe();
    const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
    const fail = (e: Error) => {
      throw e;
    };
    const sender = new Link(
      a,
      COORDINATOR,
      1,
      () => 3,
      () => {},
      fail,
    );
    const got: HostInput<Tensor>[][] = [];
    let arrived!: () => void;
    const two = new Promise<void>((resolve) => (arrived = resolve));
    new Link(
      b,
      1,
      COORDINATOR,
      () => 3,
      (link, raw) => {
        got.push(decodeHostInputs(raw, link.edgeIn, COORDINATOR, limits).messages);
        if (got.length === 2) arrived();
      },
      fail,
    );
    const words = [0x7fc00001, 0xffc12345, 0x80000000, 0x00000001, 0x3f800000];
    const data = new Float32Array(SMALL_TENSOR_BYTES / 4 + words.length);
    new Uint32Array(data.buffer).set(words);
    const start: HostInput<Tensor> = {
      kind: 'start',
      step: 4,
      microbatches: 2,
      shards: [{ replica: 1, mb: 1, bindings: [['B', 3]], scale: 0.25 }],
    };
    sender.push(start);
    sender.push({
      kind: 'feed',
      step: 4,
      mb: 0,
      replica: 0,
      node: 2,
      tensor: new Tensor('float32', [data.length], data),
    });
    sender.flush();
    // The feed's tensor went beside its frame, taken over: detached here, not copied.
    expect(data.byteLength).toBe(0);
    sender.push({ kind: 'update', step: 4, lr: 0.125, scale: 1 });
    await two;
    expect(got.map((m) => m.map((x) => x.kind))).toEqual([['start', 'feed'], ['update']]);
    expect(got[0]![0]).toEqual(start);
    expect(got[1]![0]).toEqual({ kind: 'update', step: 4, lr: 0.125, scale: 1 });
    const feed = got[0]![1] as { tensor: Tensor };
    const expected = new Float32Array(SMALL_TENSOR_BYTES / 4 + words.length);
    new Uint32Array(expected.buffer).set(words);
    expect(feed.tensor.data.buffer.byteLength).toBe(expected.byteLength);
    expect([...new Uint32Array(feed.tensor.data.buffer, 0, expected.length)]).toEqual([
      ...new Uint32Array(expected.buffer),
    ]);
  });

  it('a large storage is taken over, as a port takes a transfer: detached at once, so no recycle can reach it, and it arrives intact', async () => {
    const [a, b] = await pipe();
    const pool = new StoragePool({ poison: true });
    installPool(pool);
    const n = SMALL_TENSOR_BYTES / 2;
    const storage = pool.allocate('float32', n, true) as Float32Array<ArrayBuffer>;
    for (let i = 0; i < n; i++) storage[i] = i - 0.5;
    const fail = (e: Error) => {
      throw e;
    };
    const sender = new Link(
      a,
      0,
      1,
      () => 0,
      () => {},
      fail,
    );
    // The receiver does not read yet: the frame stays with the sending socket and the kernel.
    const message: Message = {
      kind: 'activation',
      step: 1,
      mb: 0,
      replica: 0,
      node: 5,
      tensor: new Tensor('float32', [n], storage),
    };
    sender.push(message);
    sender.flush();
    // Detached: the pool forgets it instead of recycling it (Note [tensors beside the frame]).
    expect(storage.byteLength).toBe(0);
    expect(pool.recycle(new Set())).toBe(0);
    const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
    const arrived = new Promise<Message[]>((resolve) => {
      new Link(
        b,
        1,
        0,
        () => 0,
        (link, raw) => resolve(decodeHostInputs(raw, link.edgeIn, 0, limits).messages as Message[]),
        fail,
      );
    });
    const got = ((await arrived)[0] as { tensor: Tensor }).tensor.data;
    expect(got[0]).toBe(-0.5);
    expect(got[n - 1]).toBe(n - 1.5);
  });

  it("a large tensor's buffer goes back to the sender's pool once written, and the receiver takes a free one of its size from its pool", async () => {
    const [a, b] = await pipe();
    const pool = new StoragePool({ poison: true });
    a.usePool(pool);
    b.usePool(pool);
    const n = SMALL_TENSOR_BYTES / 2;
    const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
    const fail = (e: Error) => {
      throw e;
    };
    const received: Tensor[] = [];
    let arrived: () => void = () => {};
    new Link(
      b,
      1,
      0,
      () => 0,
      (link, raw) => {
        for (const m of decodeHostInputs(raw, link.edgeIn, 0, limits).messages)
          received.push((m as { tensor: Tensor }).tensor);
        arrived();
      },
      fail,
    );
    const sender = new Link(
      a,
      0,
      1,
      () => 0,
      () => {},
      fail,
    );
    const send = async (value: number) => {
      const data = new Float32Array(n).fill(value);
      const next = new Promise<void>((resolve) => (arrived = resolve));
      sender.push({
        kind: 'activation',
        step: 1,
        mb: 0,
        replica: 0,
        node: 5,
        tensor: new Tensor('float32', [n], data),
      });
      sender.flush();
      await a.drained();
      await next;
    };
    await send(1.5);
    // One receipt, one look for a free buffer; the sent buffer went back to the pool once written.
    expect(pool.stats().hits + pool.stats().misses).toBe(1);
    await send(2.5);
    // By the second receipt at least one written buffer was free: received tensors are intact all the
    // same, though the pool poisons what it gets back.
    expect(pool.stats().hits).toBeGreaterThanOrEqual(1);
    expect(received.map((t) => [t.data.length, t.data[0], t.data[n - 1]])).toEqual([
      [n, 1.5, 1.5],
      [n, 2.5, 2.5],
    ]);
  });

  it('queue what the kernel cannot take until drain, in order: a slow reader gets every frame, the queue empties', async () => {
    const [a, b] = await pipe();
    const count = 32;
    // b does not read: the kernel's buffers fill, then a's own queue.
    for (let i = 0; i < count; i++) a.postBytes(numbered(i, MiB));
    expect(a.queuedBytes).toBeGreaterThan(0);
    expect(a.queuedBytes).toBeLessThanOrEqual(count * (MiB + 4));
    const inB = collect(b);
    await inB.frame(count);
    await a.drained();
    expect(a.queuedBytes).toBe(0);
    for (let i = 0; i < count; i++)
      expect(Buffer.compare(inB.frames[i]!, numbered(i, MiB)), `frame ${i}`).toBe(0);
  });

  it('a peer that does not read, past maxQueuedBytes, breaks the connection: reported, nothing reordered', async () => {
    const { listener, accept } = await listen();
    const [a] = await Promise.all([
      connectTcp({ ...identity, port: listener.port, from: 1, to: 0, maxQueuedBytes: MiB }),
      accept(1, 0),
    ]);
    wires.push(a);
    const inA = collect(a);
    a.postBytes(numbered(0, MiB)); // a frame is always taken when nothing is queued
    a.postBytes(numbered(1, MiB));
    const err = await inA.error();
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toMatch(
      /worker 0 -> worker 1 over tcp 127\.0\.0\.1:\d+: .*maxQueuedBytes.*does not read/,
    );
    expect(a.queuedBytes).toBe(0);
    await a.whenClosed();
  });

  it('a frame over maxFrameBytes, or empty, is refused at the sender; the option is checked', async () => {
    const [a] = await pipe();
    expect(() => a.postBytes(new Uint8Array(0))).toThrow(ProtocolError);
    const { listener } = await listen();
    const big = connectTcp({ ...identity, port: listener.port, from: 1, to: 0, maxFrameBytes: 2 ** 32 });
    await expect(big).rejects.toThrow(InputError);
  });

  it('an orderly close is silent at both ends and closes both sockets; what was posted before it arrives', async () => {
    const [a, b] = await pipe();
    const inA = collect(a);
    const inB = collect(b);
    a.postBytes(numbered(1, 100));
    a.close();
    await Promise.all([a.whenClosed(), b.whenClosed()]);
    expect(inB.frames).toEqual([numbered(1, 100)]);
    expect(inA.errors.concat(inB.errors)).toEqual([]);
  });
});

describe("the runtime's cluster id (Note [stream framing])", () => {
  it('an envelope stamped with another cluster id is dropped and counted; one with this id arrives', async () => {
    const envelope = (gen: number) => {
      const link = new Link(
        {
          name: 'capture',
          post: (e) => sent.push(e),
          postBytes: () => {},
          listen: () => {},
          close: () => {},
        },
        COORDINATOR,
        0,
        () => gen,
        () => {},
        (e) => {
          throw e;
        },
      );
      link.push({ kind: 'update', step: gen, lr: 0.5, scale: 1 });
      link.flush();
      return sent.pop()!;
    };
    const sent: Parameters<TcpWire['post']>[0][] = [];
    const { listener, accept } = await listen({ clusterId: 7 });
    const accepted = accept(COORDINATOR, 0);
    const stranger = await connectTcp({
      ...identity,
      port: listener.port,
      from: COORDINATOR,
      to: 0,
      clusterId: 8,
    });
    wires.push(stranger);
    const receiver = await accepted;
    const got = collect(receiver);
    stranger.post(envelope(1));
    stranger.post(envelope(2));
    stranger.postBytes(numbered(9, 16)); // not an envelope: left to the reader, which refuses it
    await got.frame(1);
    expect(receiver.dropped).toBe(2);
    expect(got.frames[0]).toEqual(numbered(9, 16));
    // The same id: delivered, and the frame's last head word is the id.
    const { listener: l2, accept: accept2 } = await listen({ clusterId: 7 });
    const accepted2 = accept2(COORDINATOR, 0);
    const friend = await connectTcp({ ...identity, port: l2.port, from: COORDINATOR, to: 0, clusterId: 7 });
    wires.push(friend);
    const ours = collect(await accepted2);
    friend.post(envelope(3));
    await ours.frame(1);
    expect(new DataView(ours.frames[0]!.buffer).getUint32(36, true)).toBe(7);
  });
});

describe('death of a connection', () => {
  /** A raw client past the handshake, and the listener's wire for it, listened to. */
  async function admitted() {
    const { listener, accept } = await listen();
    const client = raw(listener.port, hello());
    const wire = await accept(1, 0);
    await client.ok();
    return { client, wire, inWire: collect(wire) };
  }

  it('the peer closing in the middle of a frame is an error, not a hang', async () => {
    const { client, wire, inWire } = await admitted();
    client.socket.end(Buffer.concat([prefixed(numbered(0, 8)), new Uint8Array([100, 0, 0, 0, 1, 2, 3])]));
    const err = await inWire.error();
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toMatch(
      /worker 1 -> worker 0 over tcp .*middle of a frame \(3 of a frame's 100 bytes\)/,
    );
    expect(inWire.frames).toEqual([numbered(0, 8)]);
    await wire.whenClosed();
  });

  it('a peer whose socket closes at a frame boundary without a goodbye is reported as dead', async () => {
    const { client, inWire } = await admitted();
    client.socket.destroy();
    expect((await inWire.error()).message).toMatch(/without a goodbye/);
  });

  it('a declared frame length over the limit is refused before allocation, and the connection closed', async () => {
    const { client, wire, inWire } = await admitted();
    client.socket.write(Uint8Array.of(0xff, 0xff, 0xff, 0x7f, 1, 2, 3));
    const err = await inWire.error();
    expect(err.message).toMatch(/a frame of 2147483647 bytes declared, over the limit of 1073741824/);
    expect((err as ProtocolError).context).toMatchObject({ edge: 'worker 1 -> worker 0', found: 2147483647 });
    await client.closed;
    await wire.whenClosed();
    expect(inWire.frames).toEqual([]);
  });
});

describe('the handshake (Note [tcp handshake])', () => {
  const version = (v: number) => {
    const h = hello();
    new DataView(h.buffer).setInt32(4, v, true);
    return h;
  };
  const tooLong = () => {
    const h = hello();
    new DataView(h.buffer).setUint32(8, MAX_HELLO_BYTES, true);
    return h;
  };
  const cases: [string, () => Uint8Array, string, RegExp][] = [
    ['a wrong secret', () => hello({ secret: randomBytes(32) }), 'secret', /expected the runtime's secret/],
    ['another cluster', () => hello({ cluster: 'other' }), 'cluster', /expected cluster "test", found other/],
    ['another protocol version', () => version(PROTOCOL_VERSION + 1), 'version', /protocol version/],
    ['garbage', () => new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'), 'garbage', /magic 'BFLH'/],
    ['a hello too long', tooLong, 'too long', /hello of 40 to 1012 bytes, found 1024/],
  ];

  it.each(cases)('%s: closed without a reply, no frame read, reported', async (_, bytes, reason, message) => {
    const { listener, refused, accept } = await listen();
    const accepting = expect(accept(1, 0)).rejects.toThrow(/listener closed before the peer connected/);
    // A frame right behind the hello: it must never be read.
    const client = raw(listener.port, Buffer.concat([bytes(), prefixed(numbered(0, 8))]));
    const err = await refused();
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toMatch(message);
    expect(err.context).toMatchObject({ phase: 'handshake', reason });
    expect((await client.closed).length).toBe(0);
    listener.close();
    await accepting;
  });

  it('a client that never says hello is refused at the timeout', async () => {
    const { listener, refused } = await listen({ helloTimeoutMs: 20 });
    const client = raw(listener.port, new Uint8Array(0));
    const err = await refused();
    expect(err.context).toMatchObject({ reason: 'timeout' });
    expect(err.message).toMatch(/a hello within 20 ms/);
    await client.closed;
  });

  it('connectTcp with a wrong secret rejects, and the listener reports it', async () => {
    const { listener, refused } = await listen();
    const connecting = connectTcp({
      ...identity,
      secret: randomBytes(32),
      port: listener.port,
      from: 1,
      to: 0,
    });
    await expect(connecting).rejects.toThrow(
      /worker 1 -> worker 0 to tcp 127\.0\.0\.1:\d+: connection refused \(closed\)/,
    );
    expect((await refused()).context).toMatchObject({ reason: 'secret' });
  });

  it('routes the peers of one listening port to their links, in any order of connection and accept', async () => {
    const { listener, accept } = await listen();
    const peers = [2, COORDINATOR, 1];
    const clients = await Promise.all(
      peers.map(async (from) => {
        const wire = await connectTcp({ ...identity, port: listener.port, from, to: 0 });
        wires.push(wire);
        wire.postBytes(numbered(from + 10, 16));
        return wire;
      }),
    );
    for (const from of [1, COORDINATOR, 2]) {
      const inWire = collect(await accept(from, 0));
      await inWire.frame(1);
      expect(inWire.frames).toEqual([numbered(from + 10, 16)]);
    }
    // Replies go back to the right peer too.
    expect(clients.map((c) => c.edge)).toEqual([
      'worker 0 -> worker 2',
      'worker 0 -> coordinator',
      'worker 0 -> worker 1',
    ]);
  });

  it('a second connection for the same link is refused; the first one keeps working', async () => {
    const { listener, refused, accept } = await listen();
    const first = await connectTcp({ ...identity, port: listener.port, from: 1, to: 0 });
    wires.push(first);
    const second = connectTcp({ ...identity, port: listener.port, from: 1, to: 0 });
    await expect(second).rejects.toThrow(ProtocolError);
    const err = await refused();
    expect(err.context).toMatchObject({ reason: 'duplicate' });
    expect(err.message).toMatch(/one connection for worker 1 -> worker 0/);
    const inWire = collect(await accept(1, 0));
    first.postBytes(numbered(3, 5));
    await inWire.frame(1);
    expect(inWire.frames).toEqual([numbered(3, 5)]);
  });
});
