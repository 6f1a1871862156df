// Control calls over NATS (Note [NATS calls]) through a real nats-server: values of any size in
// chunks below max_payload, bit for bit; a handler's error as a RemoteError; a call without an answer
// rejected at its timeout; a declared body over the limit, or a broken chunk stream, refused from the
// chunk's head (a ProtocolError, the handler never called) while the next call goes through.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, expect, it } from 'vitest';
import { InputError, ProtocolError } from '../../src/errors.ts';
import {
  Caller,
  CallTimeoutError,
  MAX_BODY_BYTES,
  RemoteError,
  serveCalls,
} from '../../src/protocol/nats-rpc.ts';
import { describeNats, natsUrl } from '../support/nats.ts';

const MAGIC = 0x43524642; // 'BFRC'
const CALL = 0;

const connections: NatsConnection[] = [];
const callers: Caller[] = [];
afterEach(async () => {
  for (const c of callers.splice(0)) c.close();
  for (const nc of connections.splice(0)) await nc.close();
});

async function natsConnection(): Promise<NatsConnection> {
  const nc = await connect({ servers: natsUrl()! });
  connections.push(nc);
  return nc;
}

let subjects = 0;
/** A subject of its own for each test. */
const freshSubject = () => `rpc-test.${process.pid}.${subjects++}`;

/** A chunk as a caller would publish it, its six head words given by hand. */
function rawChunk(
  head: { magic?: number; id: number; index: number; count: number; bytes: number },
  body = 0,
) {
  const chunk = new Uint8Array(24 + body);
  const view = new DataView(chunk.buffer);
  const words = [head.magic ?? MAGIC, head.id, head.index, head.count, head.bytes, CALL];
  for (const [k, w] of words.entries()) view.setUint32(k * 4, w, true);
  return chunk;
}

/** A server on `subject` that echoes, counts its calls and keeps what it refused. */
async function echoServer(subject: string, maxBodyBytes?: number) {
  const nc = await natsConnection();
  const errors: Error[] = [];
  let calls = 0;
  const sub = serveCalls(
    nc,
    subject,
    async (value) => {
      calls++;
      if ((value as { fail?: boolean }).fail)
        throw new InputError('the handler refused', { node: 'n3', microbatch: 2 });
      return value;
    },
    { onError: (e) => errors.push(e), ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}) },
  );
  await nc.flush();
  return { nc, errors, calls: () => calls, sub };
}

async function caller(): Promise<Caller> {
  const c = new Caller(await natsConnection());
  callers.push(c);
  return c;
}

describeNats('control calls over NATS', () => {
  it('a value of 3 MiB goes in chunks below max_payload and comes back bit for bit; concurrent calls match by id', async () => {
    const subject = freshSubject();
    await echoServer(subject);
    const spy = await natsConnection();
    const sizes: number[] = [];
    spy.subscribe(subject, { callback: (_, msg) => void sizes.push(msg.data.length) });
    await spy.flush();
    const c = await caller();
    const big = new Float64Array((3 << 20) / 8).map((_, i) => Math.sin(i) * 1e300);
    big[0] = -0;
    big[1] = Number.NaN;
    const [back, small] = (await Promise.all([
      c.call(subject, { big }, 5000, 'a big call'),
      c.call(subject, { n: 7 }, 5000, 'a small call'),
    ])) as [{ big: Float64Array }, { n: number }];
    expect(small).toEqual({ n: 7 });
    expect(back.big).toBeInstanceOf(Float64Array);
    // Note: Buffer.equals compares the bytes at once (toEqual walks 3M elements one by one).
    const bytes = Buffer.from(back.big.buffer, back.big.byteOffset, back.big.byteLength);
    expect(bytes.equals(Buffer.from(big.buffer))).toBe(true);
    await spy.flush();
    const maxPayload = spy.info!.max_payload;
    expect(sizes.length).toBeGreaterThanOrEqual(1 + Math.ceil(big.byteLength / maxPayload));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(maxPayload);
  });

  it("a handler's error comes back as a RemoteError with its name, message and context", async () => {
    const subject = freshSubject();
    await echoServer(subject);
    const c = await caller();
    const error = await c.call(subject, { fail: true }, 5000, 'a failing call').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({
      message: 'the handler refused',
      remoteName: 'InputError',
      context: { node: 'n3', microbatch: 2 },
    });
  });

  it('a call nobody answers rejects at its timeout naming the call; failAll rejects the pending ones', async () => {
    const c = await caller();
    const lost = await c.call(freshSubject(), { n: 1 }, 200, 'a call to nobody').catch((e: unknown) => e);
    expect(lost).toBeInstanceOf(CallTimeoutError);
    expect(lost).toMatchObject({
      message: 'a call to nobody: no answer within 200 ms',
      context: { call: 'a call to nobody', timeoutMs: 200 },
    });
    const pending = c.call(freshSubject(), { n: 2 }, 60_000, 'a call cut short');
    c.failAll(new ProtocolError('the connection is gone'));
    await expect(pending).rejects.toThrow('the connection is gone');
  });

  it('a declared body over the limit is refused from its first chunk: the handler never runs, the next call does', async () => {
    const subject = freshSubject();
    const server = await echoServer(subject);
    const nc = await natsConnection();
    const inbox = `_INBOX.rpc-test.${process.pid}`;
    // 4 GiB - 1 declared in 24 bytes: refused on the head, nothing that size allocated.
    nc.publish(subject, rawChunk({ id: 1, index: 0, count: 4096, bytes: 0xffffffff }), { reply: inbox });
    await nc.flush();
    const c = await caller();
    expect(await c.call(subject, { after: true }, 5000, 'a call after')).toEqual({ after: true });
    expect(server.errors).toHaveLength(1);
    expect(server.errors[0]).toBeInstanceOf(ProtocolError);
    expect(server.errors[0]!.message).toBe(
      `a control body of ${0xffffffff} bytes: expected at most ${MAX_BODY_BYTES}`,
    );
    expect(server.calls()).toBe(1);

    // A server's own lower limit holds the same way.
    const tight = freshSubject();
    const small = await echoServer(tight, 1024);
    await expect(c.call(tight, new Uint8Array(4096), 300, 'a call over 1 KiB')).rejects.toThrow(
      CallTimeoutError,
    );
    expect(small.errors[0]!.message).toMatch(/^a control body of \d+ bytes: expected at most 1024$/);
    expect(small.calls()).toBe(0);
  });

  it('a broken chunk stream (a lost chunk, a wrong magic, a short chunk) is a ProtocolError; the next call goes through', async () => {
    const subject = freshSubject();
    const server = await echoServer(subject);
    const nc = await natsConnection();
    const reply = { reply: `_INBOX.rpc-test-broken.${process.pid}` };
    nc.publish(subject, rawChunk({ id: 1, index: 0, count: 3, bytes: 30 }, 10), reply);
    nc.publish(subject, rawChunk({ id: 1, index: 2, count: 3, bytes: 30 }, 10), reply); // chunk 1 lost
    nc.publish(subject, rawChunk({ magic: 0x12345678, id: 2, index: 0, count: 1, bytes: 0 }), reply);
    nc.publish(subject, new Uint8Array(10), reply);
    await nc.flush();
    const c = await caller();
    expect(await c.call(subject, { ok: 1 }, 5000, 'a call after')).toEqual({ ok: 1 });
    expect(server.errors.map((e) => e.constructor)).toEqual([ProtocolError, ProtocolError, ProtocolError]);
    expect(server.errors.map((e) => e.message)).toEqual([
      'control call 1: chunk 2 of 3 does not follow what came before',
      "a control chunk: expected magic 'BFRC' and kind 0, found 0x12345678 and 0",
      'a control chunk of 10 bytes: expected at least 24',
    ]);
    expect(server.calls()).toBe(1);
  });
});
