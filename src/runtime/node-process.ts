// A node process (`backflow node`): joins a cluster through NATS and serves its hosts to one
// coordinator at a time, runtime after runtime (Note [rendezvous]).
import { randomBytes } from 'node:crypto';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { transfer } from 'comlink';
import { InputError, type WorkerError } from '../errors.ts';
import { edgeName } from '../protocol/codec.ts';
import type { WorkerControl } from '../protocol/control.ts';
import { COORDINATOR, PROTOCOL_VERSION } from '../protocol/envelope.ts';
import { decodeInit } from '../protocol/frame.ts';
import { connectNats, type NatsEndpoint } from '../protocol/nats-connect.ts';
import { serveCalls } from '../protocol/nats-rpc.ts';
import { type RemoteData, readWireTls, type WireTlsFiles } from '../protocol/node-wires.ts';
import { packValue } from '../protocol/value-codec.ts';
import { KERNELS_OFFERED } from '../tensor/default-kernels.ts';
import { placementDigest, readAssign, readCall, readConnect } from './node-messages.ts';
import { WorkerPool } from './pool.ts';
import { type Announcement, backflowVersion, defaultName, nodeMajor, subjects } from './rendezvous.ts';
import { hostWorkerModule } from './source-worker.ts';
import { YOUNG_GENERATION_MB } from './threads.ts';

/**
 * What `startNode` (and `backflow node`) is told: where NATS is, the cluster, the hosts it offers
 * and how they listen.
 */
export interface NodeOptions {
  /** How to reach and authenticate to the NATS server(s). */
  readonly nats: NatsEndpoint;
  /** The cluster's name (a NATS subject token). */
  readonly cluster: string;
  /** Hosts (worker threads) offered. */
  readonly hosts: number;
  /** Default hostname-pid. */
  readonly name?: string;
  /** The address this node's hosts listen on (default '0.0.0.0'). */
  readonly listen?: string;
  /** The address others reach them at (default: `listen`, or 127.0.0.1 when that is 0.0.0.0). */
  readonly advertise?: string;
  /** Host i listens on dataPort + i (default 0: any free port). */
  readonly dataPort?: number;
  /** Mutual TLS on this node's data links (PEM files): it then serves only runtimes that ask for TLS. */
  readonly dataTls?: WireTlsFiles;
  /** How long to wait for a lost NATS server to come back before exiting (default 60 s). */
  readonly reconnectForMs?: number;
  /** What the node is doing, a line at a time (default: nothing). */
  readonly log?: (line: string) => void;
}

/** A running node: it serves coordinators, one runtime at a time, until stopped. */
export interface NodeProcess {
  /** A random id for this run of the node, unique in the cluster. */
  readonly id: string;
  /** Its name in the cluster (the `name` option, default hostname-pid). */
  readonly name: string;
  /** Resolves with the exit code once the node has stopped (0: told to stop). */
  readonly done: Promise<number>;
  /** Stops serving (closing the hosts of the runtime in progress) and disconnects. */
  stop(): Promise<number>;
}

/** The runtime a node serves now. */
interface Serving {
  readonly runtime: string;
  readonly coordinator: string;
  readonly ids: readonly number[];
  readonly pool: WorkerPool<WorkerControl>;
  readonly ports: number[];
  readonly timers: NodeJS.Timeout[];
  readonly beats: Subscription;
  lastBeat: number;
}

/** Joins the cluster and serves until stopped, its coordinator gone, or NATS lost for good. */
export async function startNode(options: NodeOptions): Promise<NodeProcess> {
  const { cluster, hosts } = options;
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > 1024)
    throw new InputError(`--workers: expected an integer in [1, 1024], found ${hosts}`, {
      option: 'workers',
      found: hosts,
    });
  const s = subjects(cluster);
  const name = options.name ?? defaultName();
  const id = randomBytes(9)
    .toString('base64url')
    .replace(/[^A-Za-z0-9]/g, 'x');
  const listen = options.listen ?? '0.0.0.0';
  const address = options.advertise ?? (listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen);
  const dataPort = options.dataPort ?? 0;
  const log = options.log ?? (() => {});
  const tls = options.dataTls === undefined ? null : readWireTls(options.dataTls, 'dataTls');
  const nc: NatsConnection = await connectNats(options.nats, {
    name: `backflow node ${name}`,
    reconnectForMs: options.reconnectForMs ?? 60_000,
  });
  let serving: Serving | null = null;
  /** A runtime whose hosts are starting (its assign not yet answered). */
  let starting: { readonly runtime: string; readonly coordinator: string } | null = null;
  let stopping = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));

  const announcement = (): Announcement => ({
    id,
    name,
    hosts,
    address,
    port: dataPort,
    protocol: PROTOCOL_VERSION,
    backflow: backflowVersion(),
    nodeMajor: nodeMajor(),
    busy: (serving ?? starting)?.coordinator ?? null,
    tls: tls !== null,
    kernels: KERNELS_OFFERED,
  });
  const announce = () => {
    if (!nc.isClosed()) nc.publish(s.join, packValue(announcement(), 'an announcement'));
  };

  /** Stops the runtime in progress (its hosts terminated); idempotent. */
  const drop = async (why: string) => {
    const current = serving;
    if (current === null) return;
    serving = null;
    for (const t of current.timers) clearInterval(t);
    current.beats.unsubscribe();
    await current.pool.close();
    log(`runtime ${current.runtime} ended: ${why}`);
    if (!stopping) announce();
  };

  const stop = async (code: number, why: string) => {
    if (stopping) return done;
    stopping = true;
    log(`stopping: ${why}`);
    await drop(why);
    await nc.close().catch(() => {});
    finish(code);
    return done;
  };

  const handlers: Record<string, (v: Record<string, unknown>) => Promise<unknown>> = {
    async assign(v) {
      const a = readAssign(v);
      if (a.tls !== (tls !== null))
        throw new InputError(
          tls === null
            ? `node ${name} has no certificate for TLS on its data links (start it with --data-tls-ca, --data-tls-cert and --data-tls-key)`
            : `node ${name} requires TLS on its data links: give the runtime cluster.dataTls`,
          { node: name, expected: tls !== null, found: a.tls },
        );
      const holder = serving ?? starting;
      if (holder !== null)
        throw new InputError(
          `node ${name} is busy: it serves runtime ${holder.runtime} of coordinator ${holder.coordinator}`,
          {
            node: name,
            busy: holder.coordinator,
          },
        );
      const ports = new Array<number>(a.workers.length).fill(0);
      let pool: WorkerPool<WorkerControl> | null = null;
      const events = s.events(a.runtime);
      // Claimed at once: a second coordinator's assign, while the hosts start, is refused too.
      starting = { runtime: a.runtime, coordinator: a.coordinator };
      try {
        pool = await WorkerPool.create<WorkerControl>({
          ...(await hostWorkerModule(a.opModules)),
          size: a.workers.length,
          ids: a.workers,
          resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
          describe: () => ({ text: '', context: {} }),
          onFailure: (error: WorkerError) => {
            const local = Number(error.context.worker);
            const worker = a.workers[local] ?? -1;
            nc.publish(
              events,
              packValue(
                {
                  kind: 'death',
                  node: id,
                  worker,
                  how: error.message.replace(/^worker \d+ /, '').trim(),
                  status: pool!.status(local),
                },
                'a death',
              ),
            );
          },
          init: async (i, api) => {
            if (a.data === 'tcp')
              ports[i] = await api.listen({
                runtime: a.runtime,
                clusterId: a.clusterId,
                secret: a.secret,
                host: listen,
                port: dataPort === 0 ? 0 : dataPort + i,
                ...(tls !== null ? { tls } : {}),
              });
          },
        });
      } finally {
        starting = null;
      }
      const beats = nc.subscribe(s.beat(a.runtime), {
        callback: () => {
          if (serving !== null) serving.lastBeat = performance.now();
        },
      });
      const current: Serving = {
        runtime: a.runtime,
        coordinator: a.coordinator,
        ids: a.workers,
        pool,
        ports,
        timers: [],
        beats,
        lastBeat: performance.now(),
      };
      serving = current;
      current.timers.push(
        setInterval(() => {
          if (nc.isClosed()) return;
          const statuses = current.ids.map((w, i) => [w, current.pool.status(i)]);
          nc.publish(events, packValue({ kind: 'beat', node: id, statuses }, 'a heartbeat'));
        }, a.heartbeatMs),
        setInterval(() => {
          const silent = performance.now() - current.lastBeat;
          if (serving === current && silent > a.deadAfterMs)
            void stop(
              1,
              `coordinator ${current.coordinator} silent for ${Math.round(silent)} ms: it is gone`,
            );
        }, a.heartbeatMs),
      );
      log(`serving runtime ${a.runtime} of coordinator ${a.coordinator}: workers ${a.workers.join(', ')}`);
      return { ports: a.workers.map((w, i) => [w, ports[i]]) };
    },

    async connect(v) {
      const current = serving;
      const c = readConnect(v);
      if (current === null || current.runtime !== c.runtime)
        throw new InputError(`connect: node ${name} serves no runtime ${c.runtime}`);
      const local = new Set(current.ids);
      const peers = new Map<number, [number, MessagePort][]>(current.ids.map((w) => [w, []]));
      for (const [a, b] of c.localPairs) {
        if (!local.has(a) || !local.has(b))
          throw new InputError(`connect: workers ${a} and ${b} are not both on node ${name}`);
        const { port1, port2 } = new MessageChannel();
        peers.get(a)!.push([b, port1]);
        peers.get(b)!.push([a, port2]);
      }
      const init = decodeInit(c.init, edgeName(COORDINATOR, current.ids[0]!));
      const digests = await Promise.all(
        current.ids.map(async (w, i) => {
          const ports = { coordinator: null, peers: peers.get(w)! };
          const remote: RemoteData =
            c.data === 'nats'
              ? {
                  kind: 'nats',
                  nats: options.nats,
                  cluster,
                  clusterId: c.clusterId,
                  peers: c.remote[i]!.peers,
                }
              : {
                  kind: 'tcp',
                  clusterId: c.clusterId,
                  runtime: c.runtime,
                  secret: c.secret,
                  timeoutMs: c.timeoutMs,
                  ...(tls !== null ? { tls } : {}),
                  ...c.remote[i]!,
                };
          const placement = await current.pool.call(
            i,
            'init',
            (api) =>
              api.init(
                init,
                transfer(
                  ports,
                  ports.peers.map(([, p]) => p),
                ),
                remote,
              ),
            c.timeoutMs,
          );
          return [w, placementDigest(placement)];
        }),
      );
      return { digests };
    },

    async call(v) {
      const current = serving;
      const c = readCall(v);
      const i = current?.ids.indexOf(c.worker) ?? -1;
      if (current === null || current.runtime !== c.runtime || i < 0)
        throw new InputError(
          `${c.method}: node ${name} does not run worker ${c.worker} of runtime ${c.runtime}`,
        );
      const [first, ...rest] = c.args;
      const moved = buffersOf(first);
      return current.pool.call(
        i,
        c.method,
        (api) =>
          (api[c.method] as (...a: unknown[]) => Promise<unknown>)(
            moved.length > 0 ? transfer(first, moved) : first,
            ...rest,
          ),
        c.timeoutMs,
      );
    },

    async kill(v) {
      const i = serving?.ids.indexOf(Number(v.worker)) ?? -1;
      if (serving !== null && i >= 0) await serving.pool.kill(i);
      return null;
    },

    async close(v) {
      if (serving !== null && serving.runtime === v.runtime)
        await drop(`closed by coordinator ${serving.coordinator}`);
      return null;
    },

    async ping() {
      return announcement();
    },
  };

  const control = serveCalls(nc, s.node(id), async (value) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new InputError('a control call: expected an object');
    const op = (value as Record<string, unknown>).op;
    if (typeof op !== 'string' || !Object.hasOwn(handlers, op))
      throw new InputError(`a control call: unknown op ${String(op)}`);
    return handlers[op]!(value as Record<string, unknown>);
  });
  const discover = nc.subscribe(s.discover, { callback: () => announce() });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') {
        log('lost the NATS server: waiting for it to come back');
        await drop('the NATS server was lost');
      } else if (status.type === 'reconnect') {
        log(`reconnected to NATS at ${status.server}`);
        announce();
      }
    }
  })();
  void nc.closed().then((err) => {
    if (!stopping) void stop(1, `the NATS connection closed${err ? `: ${err.message}` : ''}`);
  });
  await nc.flush();
  announce();
  log(
    `joined cluster ${cluster} as ${name} on ${[options.nats.servers].flat().join(', ')}: ${hosts} host${hosts === 1 ? '' : 's'}, data at ${address}${dataPort ? `:${dataPort}` : ''}`,
  );
  return {
    id,
    name,
    done,
    stop: () => {
      control.unsubscribe();
      discover.unsubscribe();
      return stop(0, 'told to stop');
    },
  };
}

/** The ArrayBuffers inside a value (tensors handed to a worker thread are moved, not copied). */
function buffersOf(v: unknown, out: ArrayBuffer[] = [], depth = 0): ArrayBuffer[] {
  if (depth > 8 || typeof v !== 'object' || v === null) return out;
  if (v instanceof ArrayBuffer) {
    if (!out.includes(v)) out.push(v);
  } else if (Array.isArray(v)) for (const x of v) buffersOf(x, out, depth + 1);
  else if (!ArrayBuffer.isView(v)) for (const x of Object.values(v)) buffersOf(x, out, depth + 1);
  return out;
}
