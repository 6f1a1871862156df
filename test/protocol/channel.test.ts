import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/actor/host.ts';
import { ProtocolError } from '../../src/errors.ts';
import { decodeHostInputs } from '../../src/protocol/codec.ts';
import { PortLink } from '../../src/protocol/link.ts';
import { Tensor } from '../../src/tensor/tensor.ts';

const limits = { nodes: 10, replicas: 1, workers: 2 };

/** Worker 0's end and worker 1's end of a real MessageChannel; what worker 1 receives, decoded. */
function channel() {
  const { port1, port2 } = new MessageChannel();
  const errors: ProtocolError[] = [];
  const arrivals: ((messages: Message[]) => void)[] = [];
  const sender = new PortLink(
    port1,
    0,
    1,
    () => 0,
    () => {},
    (e) => errors.push(e),
  );
  const receiver = new PortLink(
    port2,
    1,
    0,
    () => 0,
    (link, raw) => arrivals.shift()!(decodeHostInputs(raw, link.edgeIn, 0, limits).messages as Message[]),
    (e) => errors.push(e),
  );
  const next = () => new Promise<Message[]>((resolve) => arrivals.push(resolve));
  open.push(sender, receiver);
  return { sender, receiver, next, errors };
}
const open: PortLink[] = [];
afterEach(() => {
  for (const l of open.splice(0)) l.close();
});

const activation = (tensor: Tensor, node = 5): Message => ({
  kind: 'activation',
  step: 1,
  mb: 0,
  replica: 0,
  node,
  tensor,
});

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
  it('NaN payloads, +-Inf, -0 and denormals arrive bit-identical, and the sender gave its buffers away', async () => {
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
    const { sender, next } = channel();
    const a = f32(words32);
    const b = f64(words64);
    const arrived = next();
    sender.push(activation(a, 5));
    sender.push({ kind: 'gradient', step: 1, mb: 0, replica: 0, node: 4, consumer: 5, slot: 1, tensor: b });
    const [m0, m1] = await arrived;
    expect(bits32((m0 as { tensor: Tensor }).tensor)).toEqual(words32);
    expect(bits64((m1 as { tensor: Tensor }).tensor)).toEqual(words64);
    // Transferred, not cloned: the sender's storage is detached.
    expect(a.data.byteLength).toBe(0);
    expect(b.data.byteLength).toBe(0);
    expect(sender.copies).toBe(0);
  });

  it('batches the messages of one turn into one envelope', async () => {
    const { sender, next } = channel();
    const arrived = next();
    for (let i = 0; i < 5; i++) sender.push(activation(f32([i]), i));
    expect((await arrived).map((m) => m.node)).toEqual([0, 1, 2, 3, 4]);
  });

  it('two tensors on one buffer in one envelope (a reshape alias): the second is copied, both arrive', async () => {
    const { sender, next } = channel();
    const data = new Float32Array([1, 2, 3, 4]);
    const flat = new Tensor('float32', [4], data);
    const square = new Tensor('float32', [2, 2], new Float32Array(data.buffer));
    const arrived = next();
    sender.push(activation(flat, 1));
    sender.push(activation(square, 2));
    const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
    expect(got.map((t) => [...t.data])).toEqual([
      [1, 2, 3, 4],
      [1, 2, 3, 4],
    ]);
    expect(got[1]!.shape).toEqual([2, 2]);
    expect(got[0]!.data.buffer).not.toBe(got[1]!.data.buffer);
    expect(sender.copies).toBe(1);
  });

  it('a small view of a huge buffer, a shared buffer, a view at an offset: copied, only their own bytes travel', async () => {
    const { sender, next } = channel();
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
    const arrived = next();
    for (const [i, t] of [small, shared, offset].entries()) sender.push(activation(t, i));
    const got = (await arrived).map((m) => (m as { tensor: Tensor }).tensor);
    expect(got.map((t) => [...t.data])).toEqual([
      [1, 2, 3, 4],
      [5, 6],
      [7, 8],
    ]);
    expect(got.map((t) => t.data.buffer.byteLength)).toEqual([16, 8, 8]);
    expect(huge.byteLength).toBe(1 << 20);
    expect([...small.data]).toEqual([1, 2, 3, 4]);
    expect(sender.copies).toBe(3);
    expect(pooled.buffer.byteLength).toBeGreaterThan(0);
  });

  it('a detached buffer, or a tensor sent twice, is a ProtocolError naming the edge; nothing of it is sent', async () => {
    const { sender, next } = channel();
    const t = f32([1, 2]);
    structuredClone(t.data.buffer, { transfer: [t.data.buffer] });
    expect(() => sender.push(activation(t, 3))).toThrow(ProtocolError);
    expect(() => sender.push(activation(t, 3))).toThrow(
      /^worker 0 -> worker 1: activation %3, replica 0, microbatch 0: the tensor float32\[2\] has 0 bytes of 8: its buffer was detached/,
    );
    const reused = f32([3]);
    let arrived = next();
    sender.push(activation(reused, 1));
    expect((await arrived).length).toBe(1);
    expect(() => sender.push(activation(reused, 1))).toThrow(ProtocolError);
    // The link still works for good tensors.
    arrived = next();
    sender.push(activation(f32([4]), 2));
    expect((await arrived).map((m) => m.node)).toEqual([2]);
  });

  it('an envelope that is not one reaches the receiver as a ProtocolError naming the edge', () => {
    const { receiver } = channel();
    expect(() => decodeHostInputs({ v: 1, gen: 0, from: 0 }, receiver.edgeIn, 0, limits)).toThrow(
      /^worker 0 -> worker 1: envelope: expected \{v, gen, from, messages\} \(missing messages\)/,
    );
  });
});
