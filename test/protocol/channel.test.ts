import { afterEach, describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { SMALL_TENSOR_BYTES } from '../../src/protocol/batch.ts';
import { decodeHostInputs } from '../../src/protocol/batch-reader.ts';
import { MAX_BATCH } from '../../src/protocol/link.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { activation, closeChannels, channel as openChannel } from '../support/channel.ts';

const limits = { nodes: 10, replicas: 1, workers: 2 };
const channel = () => openChannel(limits);

afterEach(closeChannels);

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

const bits32 = (t: Tensor) => [...new Uint32Array(t.data.buffer, t.data.byteOffset, t.size)];
const bits64 = (t: Tensor) => [...new BigUint64Array(t.data.buffer, t.data.byteOffset, t.size)];

describe('tensors through a real MessageChannel', () => {
  it('NaN payloads, +-Inf, -0 and denormals arrive bit-identical, copied (small) or transferred (large)', async () => {
    const words32 = [
      0x7fc00001, 0xffc12345, 0x7fa00000, 0x7f800000, 0xff800000, 0x80000000, 0x00000001, 0x807fffff,
      0x3f800000,
    ];
    const words64 = [
      0x7ff8000000000001n,
      0xfff4000000000abcn,
      0x7ff0000000000000n,
      0xfff0000000000000n,
      0x8000000000000000n,
      0x0000000000000001n,
      0x800fffffffffffffn,
    ];
    // Past the threshold the same words lead a large tensor: that one is transferred whole.
    const pad32 = SMALL_TENSOR_BYTES / 4;
    const big32 = [...words32, ...new Array<number>(pad32).fill(0x7fc00002)];
    const big64 = [...words64, ...new Array<bigint>(SMALL_TENSOR_BYTES / 8).fill(0xfff8000000000003n)];
    const { sender, next } = channel();
    const [a, b, c, d] = [f32(words32), f64(words64), f32(big32), f64(big64)];
    const arrived = next();
    sender.push(activation(a, 5));
    sender.push({ kind: 'gradient', step: 1, mb: 0, replica: 0, node: 4, consumer: 5, slot: 1, tensor: b });
    sender.push(activation(c, 6));
    sender.push({ kind: 'gradient', step: 1, mb: 0, replica: 0, node: 4, consumer: 6, slot: 1, tensor: d });
    const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
    expect(bits32(got[0]!)).toEqual(words32);
    expect(bits64(got[1]!)).toEqual(words64);
    expect(bits32(got[2]!)).toEqual(big32);
    expect(bits64(got[3]!)).toEqual(big64);
    // Small tensors were copied into the envelope: the sender still has them (and may reuse them).
    expect(bits32(a)).toEqual(words32);
    expect(b.data.byteLength).toBe(words64.length * 8);
    // Large ones were transferred, not cloned: the sender's storage is detached.
    expect(c.data.byteLength).toBe(0);
    expect(d.data.byteLength).toBe(0);
    expect(sender.copies).toBe(0);
  });

  it('batches the messages of one turn into one envelope', async () => {
    const { sender, next } = channel();
    const arrived = next();
    for (let i = 0; i < 5; i++) sender.push(activation(f32([i]), i));
    expect((await arrived).map((m) => m.node)).toEqual([0, 1, 2, 3, 4]);
  });

  it('sends a full batch at once, without waiting for the end of the turn (Note [flush cadence])', async () => {
    const { sender, next } = channel();
    const first = next();
    const second = next();
    for (let i = 0; i <= MAX_BATCH; i++)
      sender.push(activation(new Tensor('float32', [1], new Float32Array([i])), i % 10));
    // The first MAX_BATCH left with the push that filled them, the last one at the end of the turn.
    expect((await first).length).toBe(MAX_BATCH);
    expect((await second).map((m) => (m as { tensor: Tensor }).tensor.data[0])).toEqual([MAX_BATCH]);
  });

  it('a held message waits for the next one pushed without, or a flush, and keeps its place (Note [report cadence])', async () => {
    const { sender, next } = channel();
    let posts = 0;
    sender.aroundPost = (post) => {
      posts++;
      post();
    };
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const first = next();
    sender.push(activation(f32([1]), 1), true);
    sender.push(activation(f32([2]), 2), true);
    await turn();
    expect(posts).toBe(0);
    sender.push(activation(f32([3]), 3));
    expect((await first).map((m) => m.node)).toEqual([1, 2, 3]);
    expect(posts).toBe(1);
    const second = next();
    sender.push(activation(f32([4]), 4), true);
    await turn();
    expect(posts).toBe(1);
    sender.flush();
    expect((await second).map((m) => m.node)).toEqual([4]);
    expect(posts).toBe(2);
  });

  it('two tensors on one buffer in one envelope (a reshape alias): both arrive, on buffers of their own', async () => {
    const { sender, next } = channel();
    for (const n of [4, SMALL_TENSOR_BYTES]) {
      const data = new Float32Array(n).map((_, i) => i + 1);
      const flat = new Tensor('float32', [n], data);
      const square = new Tensor('float32', [2, n / 2], new Float32Array(data.buffer));
      const arrived = next();
      sender.push(activation(flat, 1));
      sender.push(activation(square, 2));
      const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
      expect(got.map((t) => t.data.slice(0, 4))).toEqual([
        new Float32Array([1, 2, 3, 4]),
        new Float32Array([1, 2, 3, 4]),
      ]);
      expect(got[1]!.shape).toEqual([2, n / 2]);
      expect(got[0]!.data.buffer).not.toBe(got[1]!.data.buffer);
    }
    // Only the large pair needed a copy before its transfer (a buffer cannot be transferred twice).
    expect(sender.copies).toBe(1);
  });

  it('a small view of a huge buffer, a shared buffer, a view at an offset: only their own bytes travel', async () => {
    const { sender, next, raws } = channel();
    const huge = new ArrayBuffer(1 << 20);
    const small = new Tensor('float32', [4], new Float32Array(huge, 0, 4));
    small.data.set([1, 2, 3, 4]);
    const shared = new Tensor(
      'float32',
      [2],
      new Float32Array(new SharedArrayBuffer(8)) as unknown as Float32Array<ArrayBuffer>,
    );
    shared.data.set([5, 6]);
    // A pooled Node Buffer is a view at an offset: Tensor refuses one, the codec copies one anyway.
    Buffer.allocUnsafe(8);
    const pooled = Buffer.allocUnsafe(8);
    expect(pooled.byteOffset).toBeGreaterThan(0);
    new Float32Array(pooled.buffer, pooled.byteOffset, 2).set([7, 8]);
    const offset = {
      dtype: 'float32',
      shape: [2],
      data: new Float32Array(pooled.buffer, pooled.byteOffset, 2),
    } as unknown as Tensor;
    // The same, past the threshold: copied into a buffer of its own, then transferred.
    const huge2 = new ArrayBuffer(1 << 20);
    const bigView = new Tensor(
      'float32',
      [SMALL_TENSOR_BYTES],
      new Float32Array(huge2, 0, SMALL_TENSOR_BYTES),
    );
    const arrived = next();
    for (const [i, t] of [small, shared, offset, bigView].entries()) sender.push(activation(t, i));
    const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
    expect(got.slice(0, 3).map((t) => [...t.data])).toEqual([
      [1, 2, 3, 4],
      [5, 6],
      [7, 8],
    ]);
    expect(got.map((t) => t.data.buffer.byteLength)).toEqual([16, 8, 8, SMALL_TENSOR_BYTES * 4]);
    const raw = raws[0] as { payload: ArrayBuffer; buffers: ArrayBuffer[] };
    expect(raw.payload.byteLength).toBe(32);
    expect(raw.buffers.map((b) => b.byteLength)).toEqual([SMALL_TENSOR_BYTES * 4]);
    expect([huge.byteLength, huge2.byteLength]).toEqual([1 << 20, 1 << 20]);
    expect([...small.data]).toEqual([1, 2, 3, 4]);
    expect(sender.copies).toBe(1);
    expect(pooled.buffer.byteLength).toBeGreaterThan(0);
  });

  it('a detached buffer is a ProtocolError naming the edge, nothing of it is sent; a large tensor sent twice too', async () => {
    const { sender, next } = channel();
    const t = f32([1, 2]);
    structuredClone(t.data.buffer, { transfer: [t.data.buffer] });
    expect(() => sender.push(activation(t, 3))).toThrow(ProtocolError);
    expect(() => sender.push(activation(t, 3))).toThrow(
      /^worker 0 -> worker 1: activation %3, replica 0, microbatch 0: the tensor float32\[2\] has 0 bytes of 8: its buffer was detached/,
    );
    // A small tensor is copied into the envelope: sending it again sends its values again.
    const reused = f32([3]);
    let arrived = next();
    sender.push(activation(reused, 1));
    sender.push(activation(reused, 2));
    expect((await arrived).map((m) => m.node)).toEqual([1, 2]);
    // A large one was transferred: sending it again is the sender's bug.
    const large = new Tensor('float32', [SMALL_TENSOR_BYTES], new Float32Array(SMALL_TENSOR_BYTES));
    arrived = next();
    sender.push(activation(large, 1));
    expect((await arrived).length).toBe(1);
    expect(() => sender.push(activation(large, 1))).toThrow(/its buffer was detached/);
    // The link still works for good tensors.
    arrived = next();
    sender.push(activation(f32([4]), 2));
    expect((await arrived).map((m) => m.node)).toEqual([2]);
  });

  it('an envelope that is not one reaches the receiver as a ProtocolError naming the edge', () => {
    const { receiver } = channel();
    expect(() => decodeHostInputs({ v: 2, gen: 0, from: 0 }, receiver.edgeIn, 0, limits)).toThrow(
      /^worker 0 -> worker 1: envelope: expected \{v, gen, from, count, head, payload, buffers, objects, ring\?\} \(missing count\)/,
    );
  });
});
