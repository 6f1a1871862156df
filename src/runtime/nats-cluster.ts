// The coordinator's side of hosts on node processes, found and controlled through NATS (Note
// [rendezvous]); envelopes travel on direct TCP connections or NATS subjects (Note [node links]).
import { randomBytes } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { InputError, RuntimeClosedError, WorkerError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import { COORDINATOR } from '../protocol/envelope.ts';
import { encodeInit } from '../protocol/frame.ts';
import { connectNats } from '../protocol/nats-connect.ts';
import { Caller, CallTimeoutError, RemoteError, serveCalls } from '../protocol/nats-rpc.ts';
import { openNatsWire } from '../protocol/nats-wire.ts';
import { readWireTls } from '../protocol/node-wires.ts';
import { packGraph } from '../protocol/packed-graph.ts';
import { connectTcp, SECRET_BYTES } from '../protocol/tcp-listener.ts';
import type { Wire } from '../protocol/wire.ts';
import { type ClusterEvents, type ClusterOptions, hostInit, talkingPairs } from './cluster.ts';
import { type HostCalls, LinkedCluster } from './linked-cluster.ts';
import { Liveness } from './liveness.ts';
import { findNodes, shareWorkers } from './nats-join.ts';
import { placementDigest } from './node-messages.ts';
import { ControlTimeoutError } from './pool.ts';
import { type Announcement, defaultName, type ResolvedCluster, subjects } from './rendezvous.ts';

/** How long a control call's answer may lag behind the host's own deadline (the network's share). */
const CALL_MARGIN_MS = 2000;

/** Starts a runtime's hosts on node processes of `options.cluster` (Note [rendezvous]). */
export async function createNatsCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
): Promise<LinkedCluster> {
  const spec = options.cluster;
  if (spec === undefined) throw new InputError("mode 'nats' needs the cluster option: { nats, name, nodes }");
  const me = `${defaultName()} (pid ${process.pid})`;
  const nc = await connectNats(spec.endpoint, { name: `backflow coordinator ${spec.name}` });
  const closers: (() => unknown)[] = [];
  try {
    return await start(nc, plan, events, options, spec, me, closers);
  } catch (err) {
    for (const close of closers.reverse()) await close();
    await nc.close().catch(() => {});
    throw err;
  }
}

async function start(
  nc: NatsConnection,
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
  spec: ResolvedCluster,
  me: string,
  closers: (() => unknown)[],
): Promise<LinkedCluster> {
  const s = subjects(spec.name);
  const caller = new Caller(nc);
  closers.push(() => caller.close());
  // One coordinator per cluster name: ask first, then answer for it.
  const other = await caller.call(s.coordinator, { op: 'who' }, 300, 'who coordinates').catch(() => null);
  if (other !== null)
    throw new InputError(`cluster ${spec.name} already has a coordinator: ${String(other).slice(0, 200)}`, {
      cluster: spec.name,
      coordinator: String(other).slice(0, 200),
    });
  const who = serveCalls(nc, s.coordinator, async () => me);
  closers.push(() => who.unsubscribe());

  const nodes = await findNodes(nc, spec, s);
  const share = shareWorkers(plan.workers, nodes, spec.name);
  const owner = new Int32Array(plan.workers);
  share.forEach((ids, n) => {
    for (const w of ids) owner[w] = n;
  });
  const runtime = randomBytes(9)
    .toString('base64url')
    .replace(/[^A-Za-z0-9]/g, 'x');
  const clusterId = randomBytes(4).readUInt32LE(0);
  const secret = new Uint8Array(randomBytes(SECRET_BYTES));
  const tls = spec.dataTls === null ? undefined : readWireTls(spec.dataTls, 'cluster.dataTls');
  // The coordinator's heartbeats start before the nodes do anything for it: a node that waits for
  // them (while its hosts compile, say) must not take a slow start for a coordinator gone.
  let checkNodes = () => {};
  const beats = setInterval(() => {
    if (!nc.isClosed()) nc.publish(s.beat(runtime), new Uint8Array(0));
    checkNodes();
  }, spec.heartbeatMs);
  closers.push(() => clearInterval(beats));
  const call = (n: number, body: Record<string, unknown>, timeoutMs: number, what: string) =>
    caller.call(s.node(nodes[n]!.id), { runtime, ...body }, timeoutMs, `${what} on node ${nodes[n]!.name}`);
  /** Nodes known to be gone are not asked (their answer would only come at the timeout). */
  let gone = (_: number) => false;
  const closeNodes = () =>
    Promise.allSettled(
      nodes.flatMap((a, k) =>
        share[k]!.length === 0 || gone(k)
          ? []
          : [caller.call(s.node(a.id), { op: 'close', runtime }, 2000, 'close')],
      ),
    );
  closers.push(closeNodes);

  // Assign: each node starts its hosts, which listen; their ports come back.
  const assigned = await Promise.all(
    nodes.map((_, n) =>
      share[n]!.length === 0
        ? null
        : call(
            n,
            {
              op: 'assign',
              clusterId,
              coordinator: me,
              workers: share[n],
              secret,
              data: spec.data,
              heartbeatMs: spec.heartbeatMs,
              deadAfterMs: spec.deadAfterMs,
              tls: tls !== undefined,
              opModules: options.ops.length > 0,
            },
            spec.joinTimeoutMs,
            'assign',
          ),
    ),
  );
  const port = new Int32Array(plan.workers);
  for (const a of assigned) {
    for (const [w, p] of (a as { ports: [number, number][] } | null)?.ports ?? []) port[w] = p;
  }

  // Connect: every host opens its links; the coordinator opens its own to every host meanwhile.
  const n = plan.workers;
  const talk = talkingPairs(plan);
  const talks = (a: number, b: number) => talk[Math.min(a, b) * n + Math.max(a, b)] === 1;
  const address = (w: number) => nodes[owner[w]!]!.address;
  const init = encodeInit(hostInit(plan, options, packGraph(plan.graph)));
  const wires: Wire[] = new Array(n);
  let opened: Promise<unknown> = Promise.resolve();
  if (spec.data === 'nats') {
    for (let w = 0; w < n; w++)
      wires[w] = await openNatsWire(nc, { cluster: spec.name, clusterId, self: COORDINATOR, peer: w });
  }
  const connected = nodes.map((_, k) => {
    const ids = share[k]!;
    if (ids.length === 0) return null;
    const localPairs: [number, number][] = [];
    for (const a of ids) for (const b of ids) if (a < b && talks(a, b)) localPairs.push([a, b]);
    const remote = ids.map((w) => {
      const far: number[] = [];
      for (let p = 0; p < n; p++) if (p !== w && owner[p] !== k && talks(w, p)) far.push(p);
      return {
        peers: [COORDINATOR, ...far],
        accept: [COORDINATOR, ...far.filter((p) => p < w)],
        connect: spec.data === 'tcp' ? far.filter((p) => p > w).map((p) => [p, address(p), port[p]!]) : [],
      };
    });
    return call(
      k,
      {
        op: 'connect',
        clusterId,
        secret,
        data: spec.data,
        init,
        localPairs,
        remote,
        timeoutMs: spec.joinTimeoutMs,
      },
      spec.joinTimeoutMs + CALL_MARGIN_MS,
      'connect',
    );
  });
  if (spec.data === 'tcp') {
    const tcp = Promise.all(
      Array.from({ length: n }, (_, w) =>
        connectTcp({
          cluster: runtime,
          secret,
          clusterId,
          host: address(w),
          port: port[w]!,
          from: COORDINATOR,
          to: w,
          ...(tls !== undefined ? { tls } : {}),
        }).then((wire) => (wires[w] = wire)),
      ),
    );
    opened = tcp;
  }
  const answers = await Promise.all([...connected, opened]).catch((err) => {
    for (const w of wires) w?.close();
    throw err;
  });
  const expected = placementDigest(plan.placement);
  for (const a of answers.slice(0, nodes.length))
    for (const [w, digest] of (a as { digests: [number, string][] } | null)?.digests ?? [])
      if (digest !== expected)
        throw new InputError(
          `worker ${w} compiled a plan that places nodes differently from the coordinator's`,
          {
            worker: w,
            expected: 'the same placement (compile is pure)',
          },
        );

  const watch = new Liveness(plan, events, nodes, share, spec);
  gone = (k) => watch.gone(k);
  checkNodes = () => watch.check();
  const sub: Subscription = nc.subscribe(s.events(runtime), {
    callback: (err, msg) => {
      if (err === null) watch.event(msg.data);
    },
  });
  closers.push(() => sub.unsubscribe());
  void (async () => {
    for await (const status of nc.status())
      if (status.type === 'disconnect' || status.type === 'error' || status.type === 'staleConnection')
        watch.lostNats(status.type);
  })();
  void nc.closed().then(() => watch.lostNats('close'));

  let closed = false;
  const calls: HostCalls = {
    async call(w, method, args, { timeoutMs = 10_000 } = {}) {
      if (closed) throw new RuntimeClosedError(`${method} on worker ${w}: the cluster is closed`);
      const dead = watch.deathOf(w);
      if (dead !== null)
        throw new WorkerError(
          `${method}: ${dead.message}`,
          { ...dead.context, call: method },
          { cause: dead },
        );
      const node = nodes[owner[w]!]!;
      try {
        return (await call(
          owner[w]!,
          { op: 'call', worker: w, method, args, timeoutMs },
          timeoutMs + CALL_MARGIN_MS,
          method,
        )) as never;
      } catch (err) {
        throw remoteFailure(err, w, node, method);
      }
    },
    async kill(w) {
      await call(owner[w]!, { op: 'kill', worker: w }, 5000, 'kill');
    },
    // Its node terminates the worker: the death it then reports finds the runtime broken already.
    async stop(w) {
      await call(owner[w]!, { op: 'kill', worker: w }, 5000, 'kill').catch(() => {});
    },
    async close() {
      closed = true;
      watch.stop();
      for (const close of closers.reverse()) await close();
      await nc.close().catch(() => {});
    },
  };
  // A host stopped at a failpoint says where: fresher than its node's last heartbeat.
  const seen: ClusterEvents = {
    ...events,
    failpoint(worker, action, task) {
      watch.task(worker, task);
      events.failpoint?.(worker, action, task);
    },
  };
  return new LinkedCluster(
    plan,
    seen,
    calls,
    wires.map((wire, w) => watched(wire, (cause) => watch.lostLink(w, cause))),
  );
}

/** A wire whose failure is a lost node, not a broken envelope: reported by `lost`. */
function watched(wire: Wire, lost: (cause: Error) => void): Wire {
  return {
    name: wire.name,
    post: (e, t) => wire.post(e, t),
    postBytes: (f) => wire.postBytes(f),
    get dropped() {
      return wire.dropped;
    },
    listen: (receive) => wire.listen(receive, lost),
    close: () => wire.close(),
  };
}

/** What a node's answer to a control call means on the coordinator's side. */
function remoteFailure(err: unknown, w: number, node: Announcement, method: string): Error {
  const where = { worker: w, nodeProcess: node.name, call: method };
  if (err instanceof CallTimeoutError)
    return new ControlTimeoutError(
      `worker ${w} on node ${node.name} did not answer ${method}: ${err.message}`,
      where,
    );
  if (err instanceof RemoteError) {
    const context = { ...err.context, ...where };
    if (err.remoteName === 'ControlTimeoutError')
      return new ControlTimeoutError(`node ${node.name}: ${err.message}`, context);
    if (err.remoteName === 'RuntimeClosedError')
      return new RuntimeClosedError(`node ${node.name}: ${err.message}`, context);
    return new WorkerError(`node ${node.name}: ${err.message}`, context, { cause: err });
  }
  return err as Error;
}
