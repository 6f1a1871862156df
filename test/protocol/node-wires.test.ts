// A node's host opening its links (Note [node links]): a connection without the runtime's secret is
// closed before anything is read, the right one is admitted, and a peer that never comes is an error
// in bounded time.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { listenForLinks, openRemoteWires, readWireTls } from '../../src/protocol/node-wires.ts';
import { connectTcp, TcpListener } from '../../src/protocol/tcp-listener.ts';
import { makeCerts } from '../support/certs.ts';

const secret = new Uint8Array(randomBytes(32));
const at = { runtime: 'r1', clusterId: 5, secret, host: '127.0.0.1', port: 0 };
const tcp = (timeoutMs: number) =>
  ({
    kind: 'tcp',
    runtime: 'r1',
    clusterId: 5,
    secret,
    connect: [],
    accept: [COORDINATOR],
    timeoutMs,
  }) as const;

describe('node links', () => {
  it('a connection with the wrong secret is refused; the coordinator with the right one gets the link', async () => {
    const port = await listenForLinks(at);
    const opening = openRemoteWires(0, tcp(10_000));
    const stranger = connectTcp({
      cluster: 'r1',
      secret: new Uint8Array(32),
      port,
      from: COORDINATOR,
      to: 0,
    });
    await expect(stranger).rejects.toThrow(ProtocolError);
    await expect(stranger).rejects.toMatchObject({ context: { phase: 'handshake' } });
    const coordinator = await connectTcp({
      cluster: 'r1',
      secret,
      clusterId: 5,
      port,
      from: COORDINATOR,
      to: 0,
    });
    const wires = await opening;
    expect(wires.map(([peer]) => peer)).toEqual([COORDINATOR]);
    // The listener closed once its links were in: no later connection is admitted.
    await expect(connectTcp({ cluster: 'r1', secret, port, from: 1, to: 0 })).rejects.toThrow(ProtocolError);
    coordinator.close();
    for (const [, w] of wires) w.close();
  });

  it('a peer that never connects fails the opening after its timeout, naming who was awaited', async () => {
    await listenForLinks(at);
    await expect(openRemoteWires(0, tcp(30))).rejects.toThrow(
      /host 0 waiting for the coordinator: nothing within 30 ms/,
    );
  });
});

describe('node links over mutual TLS', () => {
  const certs = makeCerts();
  afterAll(() => certs.remove());
  const pem = (files: typeof certs.good) => readWireTls(files, 'test');

  it('a client of another CA, or without TLS, is refused by the handshake; one of the cluster CA gets the link', async () => {
    const refused: ProtocolError[] = [];
    const tls = pem(certs.good);
    const listener = await TcpListener.listen({
      cluster: 'r2',
      secret,
      clusterId: 5,
      tls,
      onRefused: (e) => refused.push(e),
    });
    try {
      const accepted = listener.accept(COORDINATOR, 0);
      const hello = { cluster: 'r2', secret, port: listener.port, from: COORDINATOR, to: 0 } as const;
      await expect(connectTcp({ ...hello, tls: pem(certs.stranger) })).rejects.toThrow(ProtocolError);
      await expect(connectTcp({ ...hello, timeoutMs: 500 })).rejects.toThrow(ProtocolError);
      const wire = await connectTcp({ ...hello, tls });
      const admitted = await accepted;
      expect(refused.map((e) => e.context.reason)).toEqual(expect.arrayContaining(['tls']));
      // Frames cross inside TLS, bit for bit.
      const got = new Promise<Uint8Array>((resolve) =>
        admitted.listen(
          (raw) => resolve((raw as Uint8Array).slice()),
          () => {},
        ),
      );
      const frame = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
      wire.postBytes(frame.slice());
      expect(await got).toEqual(frame);
      wire.close();
      admitted.close();
    } finally {
      listener.close();
    }
  });
});
