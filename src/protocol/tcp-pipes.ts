// TCP wires over 127.0.0.1 in pairs, through one listener and the handshake (Note [tcp handshake]):
// what the tcp-loopback cluster and the tests connect hosts with.
import { randomBytes } from 'node:crypto';
import { connectTcp, SECRET_BYTES, TcpListener } from './tcp-listener.ts';
import type { TcpWire, TcpWireOptions } from './tcp-wire.ts';

/**
 * Connected TCP wires over 127.0.0.1, one pair per `[a, b]` (a's end first), opened through one
 * listener (as a node's peers would be) that is closed once they are connected.
 */
export async function tcpPipes(
  pairs: readonly (readonly [number, number])[],
  options: TcpWireOptions = {},
): Promise<[TcpWire, TcpWire][]> {
  const identity = { cluster: 'pipes', secret: randomBytes(SECRET_BYTES) };
  const listener = await TcpListener.listen({ ...options, ...identity });
  const accepted = pairs.map(([a, b]) => listener.accept(a, b));
  const connected = await Promise.allSettled(
    pairs.map(([a, b]) => connectTcp({ ...options, ...identity, port: listener.port, from: a, to: b })),
  );
  // A connection is handed to its accept before its reply is sent: every accept of a connected pair is settled.
  listener.close();
  const ends = await Promise.allSettled(accepted);
  const wires = [...connected, ...ends].flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = [...connected, ...ends].find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    for (const wire of wires) wire.close();
    throw failed.reason;
  }
  return pairs.map((_, i) => [wires[i]!, wires[pairs.length + i]!]);
}

/** Two connected TCP wires over 127.0.0.1, as bytePipe() makes two in memory. */
export async function tcpPipe(options: TcpWireOptions = {}): Promise<[TcpWire, TcpWire]> {
  return (await tcpPipes([[0, 1]], options))[0]!;
}
