// Note [byte framing]: envelopes as one Uint8Array, bit for bit, and every broken frame refused with
// a ProtocolError; Note [byte wires and recycled storage]: a byte wire never holds a sender's storage.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/actor/host.ts';
import { ProtocolError } from '../../src/errors.ts';
import { printGraph } from '../../src/graph/print.ts';
import { compile } from '../../src/partition/plan.ts';
import { encodeEnvelope, SMALL_TENSOR_BYTES } from '../../src/protocol/batch.ts';
import { decodeHostInputs, decodeHostOutputs } from '../../src/protocol/batch-reader.ts';
import { bytePipe } from '../../src/protocol/byte-wire.ts';
import {
  COORDINATOR,
  type HostInput,
  type HostOutput,
  type Limits,
  PROTOCOL_VERSION,
} from '../../src/protocol/envelope.ts';
import { decodeInit, encodeFrame, encodeInit, FrameWithBlobs } from '../../src/protocol/frame.ts';
import { Link } from '../../src/protocol/link.ts';
import { packGraph, unpackGraph } from '../../src/protocol/packed-graph.ts';
import { installPool, StoragePool } from '../../src/tensor/pool.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { mlp, tied } from '../support/models.ts';

const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
const EDGE = 'worker 0 -> worker 1';

function f32(words: number[]): Tensor {
  const data = new Float32Array(words.length);
  new Uint32Array(data.buffer).set(words);
  return new Tensor('float32', [words.length], data);
}
function f64(words: bigint[]): Tensor {
  const data = new Float64Array(words.length);
  new BigUint64Array(data.buffer).set(words);
  return new Tensor('float64', [words.length], data);
}
const bits = (t: Tensor) =>
  t.dtype === 'float32'
    ? [...new Uint32Array(t.data.buffer, t.data.byteOffset, t.size)]
    : [...new BigUint64Array(t.data.buffer, t.data.byteOffset, t.size)];

// NaN payloads, infinities, -0, the smallest and largest denormals, 1.
const WORDS32 = [
  0x7fc00001, 0xffc12345, 0x7fa00000, 0x7f800000, 0x80000000, 0x00000001, 0x807fffff, 0x3f800000,
];
const WORDS64 = [0x7ff8000000000001n, 0xfff4000000000abcn, 0x8000000000000000n, 0x1n, 0x800fffffffffffffn];
const big32 = () => f32([...WORDS32, ...new Array<number>(SMALL_TENSOR_BYTES / 4).fill(0x7fc00002)]);

const hostData = (): HostInput<Tensor>[] => [
  { kind: 'activation', step: 4, mb: 1, replica: 0, node: 5, tensor: f32(WORDS32) },
  { kind: 'param', step: 4, node: 2, tensor: f64(WORDS64) },
  { kind: 'gradient', step: 4, mb: 0, replica: 1, node: 5, consumer: 7, slot: 1, tensor: big32() },
  {
    kind: 'activation',
    step: 4,
    mb: 1,
    replica: 1,
    node: 6,
    tensor: new Tensor('float32', [0, 3], new Float32Array(0)),
  },
];
const frameOf = (messages: (HostInput<Tensor> | HostOutput<Tensor>)[], from = 0, smallTensorBytes?: number) =>
  encodeFrame(encodeEnvelope(messages, 3, from, EDGE, smallTensorBytes).envelope);
const fromHost = (raw: unknown) => decodeHostInputs(raw, EDGE, 0, limits);
/** A frame with a section of every kind: rows, payload, large tensors, objects (from worker 0 to the coordinator). */
const fullFrame = () =>
  frameOf(
    [
      { kind: 'grad', step: 4, node: 2, tensor: f64(WORDS64) },
      { kind: 'inputGrad', step: 4, mb: 1, replica: 0, node: 5, tensor: f32(WORDS32) },
      { kind: 'loss', step: 4, mb: 1, replica: 1, value: 0.5 },
      { kind: 'updated', step: 3 },
      { kind: 'failed', step: 4, error: { name: 'E', message: 'm', fields: {}, context: { worker: 0 } } },
    ],
    0,
    32,
  );
const toCoordinator = (raw: unknown) => decodeHostOutputs(raw, EDGE, 0, limits);
const refusal = (raw: unknown): unknown => {
  try {
    toCoordinator(raw);
    return null;
  } catch (err) {
    return err;
  }
};

describe('frames (Note [byte framing])', () => {
  it('round-trip every message kind bit for bit: NaN payloads, -0, denormals, in the payload and as large tensors', () => {
    const sent = hostData();
    const want = sent.map((m) => bits((m as { tensor: Tensor }).tensor));
    const frame = frameOf(sent);
    expect(frame).toBeInstanceOf(Uint8Array);
    // The frame is a copy: what the sender does with its tensors afterwards does not reach it.
    for (const m of sent) (m as { tensor: Tensor }).tensor.data.fill(0);
    const got = fromHost(frame);
    expect(got.gen).toBe(3);
    expect(got.messages.map((m) => bits((m as { tensor: Tensor }).tensor))).toEqual(want);
    const fields = (list: HostInput<Tensor>[]) =>
      list.map((m) => ({ ...m, tensor: (m as { tensor: Tensor }).tensor.shape }));
    expect(fields(got.messages)).toEqual(fields(sent));
    for (const m of got.messages) {
      const data = (m as { tensor: Tensor }).tensor.data;
      expect(data.byteLength).toBe(data.buffer.byteLength);
    }

    // Object messages (msgpack) keep -0 and every float; scalars travel in the payload.
    const start = {
      kind: 'start',
      step: 4,
      microbatches: 2,
      shards: [{ replica: 1, mb: 1, bindings: [['B', 3]], scale: 2 ** -1074 }],
    };
    const update = { kind: 'update', step: 4, lr: -0, scale: 0.1 };
    const main = encodeFrame(
      encodeEnvelope([start, update] as HostInput<Tensor>[], 0, COORDINATOR, EDGE).envelope,
    );
    const back = decodeHostInputs(main, 'coordinator -> worker 1', COORDINATOR, limits).messages;
    expect(back).toEqual([start, update]);
    expect(Object.is((back[1] as { lr: number }).lr, -0)).toBe(true);
    const reports: HostOutput<Tensor>[] = [
      { kind: 'loss', step: 4, mb: 1, replica: 0, value: -0 },
      { kind: 'gradNorm', step: 4, node: 3, sumsq: Number.NaN },
      {
        kind: 'failed',
        step: 4,
        error: {
          name: 'E',
          message: 'm',
          stack: 's',
          fields: { at: -0, none: undefined },
          context: { worker: 1 },
        },
      },
    ];
    const out = decodeHostOutputs(frameOf(reports, 1), 'worker 1 -> coordinator', 1, limits).messages;
    expect(out).toEqual(reports);
    expect(Object.is((out[0] as { value: number }).value, -0)).toBe(true);
    expect(Object.is((out[2] as unknown as { error: { fields: { at: number } } }).error.fields.at, -0)).toBe(
      true,
    );
  });

  it("a frame whose large tensors went beside it takes exactly those blobs, bit for bit, as the tensors' own buffers", () => {
    const sent = hostData();
    const { envelope } = encodeEnvelope(sent, 3, 0, EDGE);
    expect(envelope.buffers.length).toBe(1);
    const frame = encodeFrame(envelope, true);
    // Only the length travels in the frame: it is shorter by the tensor's bytes.
    expect(encodeFrame(envelope).byteLength - frame.byteLength).toBe(envelope.buffers[0]!.byteLength);
    const blob = envelope.buffers[0]!.slice(0);
    const got = fromHost(new FrameWithBlobs(frame, [blob])).messages;
    expect(got.map((m) => bits((m as { tensor: Tensor }).tensor))).toEqual(
      sent.map((m) => bits((m as { tensor: Tensor }).tensor)),
    );
    expect((got[2] as { tensor: Tensor }).tensor.data.buffer).toBe(blob);
    // Missing, extra, or of another size: refused, naming what the frame declared.
    expect(() => fromHost(frame)).toThrow(/buffer 0: \d+ bytes sent beside the frame, found no such blob/);
    expect(() => fromHost(new FrameWithBlobs(frame, [blob.slice(0), new ArrayBuffer(8)]))).toThrow(
      /2 buffers sent beside the frame, found a frame that names 1 of them/,
    );
    expect(() => fromHost(new FrameWithBlobs(frame, [new ArrayBuffer(8)]))).toThrow(
      /a blob of \d+ bytes, found 8 bytes/,
    );
    expect(() => fromHost(new FrameWithBlobs(encodeFrame(envelope), [blob.slice(0)]))).toThrow(ProtocolError);
  });

  it('refuses a frame cut at every byte, and one with trailing bytes', () => {
    const frame = fullFrame();
    expect(toCoordinator(frame).messages).toHaveLength(5);
    for (let n = 0; n < frame.length; n++)
      expect(refusal(frame.slice(0, n)), `${n} bytes`).toBeInstanceOf(ProtocolError);
    expect(() => fromHost(frame.slice(0, 20))).toThrow(
      /^worker 0 -> worker 1: envelope: frame: expected 40 bytes for the head, found 20 bytes \(truncated\)/,
    );
    for (const extra of [1, 8, 100]) {
      const longer = new Uint8Array(frame.length + extra);
      longer.set(frame);
      expect(() => toCoordinator(longer)).toThrow(/trailing bytes/);
    }
    // A frame at an odd offset of a larger buffer (as a socket delivers it) reads the same.
    const odd = new Uint8Array(frame.length + 3);
    odd.set(frame, 3);
    expect(toCoordinator(odd.subarray(3)).messages).toHaveLength(5);
  });

  it('names a frame of a newer protocol version, and refuses a wrong magic', () => {
    const frame = frameOf(hostData());
    const newer = frame.slice();
    new DataView(newer.buffer).setInt32(4, PROTOCOL_VERSION + 1, true);
    expect(() => fromHost(newer)).toThrow(
      new RegExp(
        `frame: expected protocol version ${PROTOCOL_VERSION} \\(the sender speaks a newer protocol\\), found ${PROTOCOL_VERSION + 1}`,
      ),
    );
    const magic = frame.slice();
    magic[0] = 0;
    expect(() => fromHost(magic)).toThrow(/expected the magic 'BFLW'/);
  });

  it('refuses random bytes, random bytes after a valid head, and any byte of a valid frame changed, with a ProtocolError only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        expect(refusal(bytes)).toBeInstanceOf(ProtocolError);
      }),
      { numRuns: 2000 },
    );
    const frame = fullFrame();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (tail) => {
        const bytes = new Uint8Array(8 + tail.length);
        bytes.set(frame.subarray(0, 8));
        bytes.set(tail, 8);
        expect(refusal(bytes)).toBeInstanceOf(ProtocolError);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.nat(frame.length - 1), fc.integer({ min: 0, max: 255 }), (i, value) => {
        const bytes = frame.slice();
        bytes[i] = value;
        const err = refusal(bytes);
        if (err !== null) expect(err).toBeInstanceOf(ProtocolError);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('host inits as bytes', () => {
  it('round-trip the packed graph and the plan options through msgpack: the same graph, the same plan', () => {
    for (const model of [mlp(), tied()]) {
      const plan = compile(model.graph, { workers: 3, replicas: 1, placement: 'per-node' });
      const init = {
        graph: packGraph(model.graph),
        options: plan.options,
        gen: 2,
        pool: { poison: true },
        ops: ['x'],
        limits: { memoryBytes: 1 << 30, flow: { windowBytes: 1 << 20, minWindow: 2 } },
        kernels: 'wasm relaxed-simd',
      };
      const back = decodeInit(encodeInit(init), 'coordinator -> worker 0');
      expect({ ...back, graph: null }).toEqual({ ...init, graph: null });
      const graph = unpackGraph(back.graph);
      expect(printGraph(graph)).toBe(printGraph(model.graph));
      expect(compile(graph, back.options).placement).toEqual(plan.placement);
    }
  });

  it('refuses a cut init, and one of a newer protocol, with a ProtocolError', () => {
    const { graph } = mlp();
    const bytes = encodeInit({
      graph: packGraph(graph),
      options: compile(graph, { workers: 1 }).options,
      gen: 0,
      pool: null,
      ops: [],
      limits: { memoryBytes: Number.POSITIVE_INFINITY, flow: null },
      kernels: 'ts',
    });
    for (let n = 0; n < bytes.length; n += 7)
      expect(() => decodeInit(bytes.slice(0, n), 'coordinator -> worker 0')).toThrow(ProtocolError);
    const newer = bytes.slice();
    new DataView(newer.buffer).setInt32(4, PROTOCOL_VERSION + 1, true);
    expect(() => decodeInit(newer, 'coordinator -> worker 0')).toThrow(/protocol version/);
  });

  it('refuses an init without the name of its kernels', () => {
    const { graph } = mlp();
    const init = {
      graph: packGraph(graph),
      options: compile(graph, { workers: 1 }).options,
      gen: 0,
      pool: null,
      ops: [],
      limits: { memoryBytes: Number.POSITIVE_INFINITY, flow: null },
    };
    for (const kernels of ['', 3, null])
      expect(() => decodeInit(encodeInit({ ...init, kernels } as never), 'coordinator -> worker 0')).toThrow(
        /kernels: the name of kernels/,
      );
  });
});

describe('a link over an in-memory byte wire (Note [byte wires and recycled storage])', () => {
  const open: Link[] = [];
  afterEach(() => {
    installPool(null);
    for (const l of open.splice(0)) l.close();
  });

  function pipe() {
    const [a, b] = bytePipe();
    const arrivals: ((m: Message[]) => void)[] = [];
    const raws: unknown[] = [];
    const sender = new Link(
      a,
      0,
      1,
      () => 0,
      () => {},
      (e) => {
        throw e;
      },
    );
    const receiver = new Link(
      b,
      1,
      0,
      () => 0,
      (link, raw) => {
        raws.push(raw);
        arrivals.shift()!(decodeHostInputs(raw, link.edgeIn, 0, limits).messages as Message[]);
      },
      (e) => {
        throw e;
      },
    );
    open.push(sender, receiver);
    const next = () => new Promise<Message[]>((resolve) => arrivals.push(resolve));
    return { sender, next, raws };
  }

  it('a pooled storage recycled (poisoned) right after the post arrives intact: the frame is a copy', async () => {
    const pool = new StoragePool({ poison: true });
    installPool(pool);
    const { sender, next, raws } = pipe();
    const n = SMALL_TENSOR_BYTES / 2; // 32 KiB of float32: pooled, and sent as a large tensor
    const storage = pool.allocate('float32', n, true) as Float32Array<ArrayBuffer>;
    for (let i = 0; i < n; i++) storage[i] = i - 0.5;
    const arrived = next();
    sender.push({
      kind: 'activation',
      step: 1,
      mb: 0,
      replica: 0,
      node: 5,
      tensor: new Tensor('float32', [n], storage),
    });
    // What a shell does before a step starts: flush its links, then recycle the step's storages.
    sender.flush();
    expect(pool.recycle(new Set())).toBe(1);
    expect(Number.isNaN(storage[1])).toBe(true);
    const [m] = await arrived;
    const got = (m as { tensor: Tensor }).tensor.data;
    expect(got[0]).toBe(-0.5);
    expect(got[n - 1]).toBe(n - 1.5);
    expect(got.buffer).not.toBe(storage.buffer);
    // One Uint8Array per envelope, as a network carries it; the sender's storage was never detached.
    expect(raws[0]).toBeInstanceOf(Uint8Array);
    expect(storage.byteLength).toBe(n * 4);
  });

  it('until it posts, the link holds the tensor: a recycle before the flush would reach the receiver', async () => {
    const pool = new StoragePool({ poison: true });
    installPool(pool);
    const { sender, next } = pipe();
    const n = SMALL_TENSOR_BYTES / 2;
    const storage = pool.allocate('float32', n, true) as Float32Array<ArrayBuffer>;
    const arrived = next();
    sender.push({
      kind: 'activation',
      step: 1,
      mb: 0,
      replica: 0,
      node: 5,
      tensor: new Tensor('float32', [n], storage),
    });
    pool.recycle(new Set());
    const [m] = await arrived;
    expect(Number.isNaN((m as { tensor: Tensor }).tensor.data[0])).toBe(true);
  });
});
