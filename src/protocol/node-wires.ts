// The wires of a host on a node process to what runs elsewhere: TCP connections to hosts on other
// nodes and to the coordinator (Note [node links]), or NATS subjects where nodes cannot reach each
// other. Opened in the host's own worker thread, so that its data never passes through another thread.

import { readFileSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { COORDINATOR } from './envelope.ts';
import type { NatsEndpoint } from './nats-connect.ts';
import { connectTcp, TcpListener, type WireTls } from './tcp-listener.ts';
import type { Wire } from './wire.ts';

// Note [node links]
// Each host of a node process listens on a port of its own (the node's data port plus its index on
// the node, or any free port) and opens its connections from its own thread: a socket cannot move
// between threads, and a relay through the node's main thread would copy every tensor once more.
// Between two hosts on different nodes, the one with the smaller worker id connects and the other
// accepts; the coordinator connects to every host. Every connection says hello with the runtime's id
// and secret, handed out at the rendezvous (Note [tcp handshake]); the listener closes once every
// expected connection has arrived, so no later connection is admitted. Hosts on the same node talk
// over MessagePorts. With `data: 'nats'`, each link is a pair of NATS subjects instead
// (Note [NATS wire order]), on a connection of the host's own.

/** How a host on a node reaches its remote peers: the runtime's TCP identity, or NATS. */
export type RemoteData =
  | {
      readonly kind: 'tcp';
      readonly runtime: string;
      readonly clusterId: number;
      readonly secret: Uint8Array;
      /** Peers this host connects to, with their address. */
      readonly connect: readonly (readonly [number, string, number])[];
      /** Peers (COORDINATOR included) that connect to this host. */
      readonly accept: readonly number[];
      readonly timeoutMs: number;
      /** Mutual TLS on every connection (Note [tcp handshake]). */
      readonly tls?: WireTls;
    }
  | {
      readonly kind: 'nats';
      readonly nats: NatsEndpoint;
      readonly cluster: string;
      readonly clusterId: number;
      /** Every remote peer, COORDINATOR included. */
      readonly peers: readonly number[];
    };

/** Where a host listens for its TCP links, before it knows its peers. */
export interface ListenAt {
  readonly runtime: string;
  /** Stamped into every envelope sent, checked on every one received (Note [stream framing]). */
  readonly clusterId: number;
  readonly secret: Uint8Array;
  readonly host: string;
  /** 0: any free port. */
  readonly port: number;
  readonly tls?: WireTls;
}

/** Where the PEM files of a data link's TLS are (on this machine). */
export interface WireTlsFiles {
  /** The CA that signed every certificate of the cluster. */
  readonly caFile: string;
  /** This end's certificate. */
  readonly certFile: string;
  /** This end's private key. */
  readonly keyFile: string;
}

/** The PEM of the files, read now; a file that cannot be read is an InputError naming `where`. */
export function readWireTls(files: WireTlsFiles, where: string): WireTls {
  const read = (key: keyof WireTlsFiles) => {
    const path = files[key];
    if (typeof path !== 'string' || path === '')
      throw new InputError(`${where}.${key}: expected a file path, found ${String(path)}`, {
        option: `${where}.${key}`,
      });
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new InputError(`${where}.${key}: cannot read ${path}: ${(err as Error).message}`, {
        option: `${where}.${key}`,
      });
    }
  };
  return { ca: read('caFile'), cert: read('certFile'), key: read('keyFile') };
}

let listener: TcpListener | null = null;

/** Starts this thread's listener (one host per thread); resolves with its port. */
export async function listenForLinks(at: ListenAt): Promise<number> {
  listener?.close();
  listener = await TcpListener.listen({
    cluster: at.runtime,
    clusterId: at.clusterId,
    secret: at.secret,
    host: at.host,
    port: at.port,
    ...(at.tls ? { tls: at.tls } : {}),
  });
  return listener.port;
}

/** Opens every remote wire of host `self`, each as [peer, wire]; the coordinator's comes first when present. */
export async function openRemoteWires(self: number, data: RemoteData): Promise<[number, Wire][]> {
  if (data.kind === 'nats') {
    // Loaded here, not with this module: every host worker imports it, and the NATS client is some
    // fifty files a worker on threads would load at its start for nothing.
    const [{ connectNats }, { openNatsWire }] = await Promise.all([
      import('./nats-connect.ts'),
      import('./nats-wire.ts'),
    ]);
    const nc = await connectNats(data.nats, { name: `backflow host ${self}` });
    const wires: [number, Wire][] = [];
    for (const peer of data.peers)
      wires.push([
        peer,
        await openNatsWire(nc, { cluster: data.cluster, clusterId: data.clusterId, self, peer }),
      ]);
    // The connection belongs to the wires: it closes with the last of them.
    let open = wires.length;
    for (const [, w] of wires) {
      const close = w.close.bind(w);
      w.close = () => {
        close();
        if (--open === 0) void nc.close();
      };
    }
    return wires;
  }
  const own = listener;
  if (own === null && data.accept.length > 0) throw new Error(`host ${self}: no listener for its links`);
  const timeout = <T>(p: Promise<T>, what: string) =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${what}: nothing within ${data.timeoutMs} ms`)),
        data.timeoutMs,
      );
      p.then(resolve, reject).finally(() => clearTimeout(t));
    });
  const settled = await Promise.allSettled([
    ...data.accept.map((peer) =>
      timeout(
        own!.accept(peer, self),
        `host ${self} waiting for ${peer === COORDINATOR ? 'the coordinator' : `worker ${peer}`}`,
      ).then((w) => [peer, w] as [number, Wire]),
    ),
    ...data.connect.map(([peer, host, port]) =>
      connectTcp({
        cluster: data.runtime,
        clusterId: data.clusterId,
        secret: data.secret,
        host,
        port,
        from: self,
        to: peer,
        ...(data.tls ? { tls: data.tls } : {}),
      }).then((w) => [peer, w] as [number, Wire]),
    ),
  ]);
  own?.close();
  listener = null;
  const wires = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    for (const [, w] of wires) w.close();
    throw failed.reason;
  }
  return wires;
}
