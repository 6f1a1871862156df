import { InputError, RuntimeClosedError, WorkerError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import { bytePipe } from '../protocol/byte-wire.ts';
import { edgeName } from '../protocol/codec.ts';
import { COORDINATOR } from '../protocol/envelope.ts';
import { decodeInit, encodeInit } from '../protocol/frame.ts';
import { packGraph } from '../protocol/packed-graph.ts';
import { tcpPipes } from '../protocol/tcp-pipes.ts';
import type { Wire } from '../protocol/wire.ts';
import {
  type ClusterEvents,
  type ClusterOptions,
  describeStatus,
  hostInit,
  IDLE_STATUS,
  type Stopped,
  samePlacement,
  sharedThreadHalt,
  talkingPairs,
} from './cluster.ts';
import { type HostCalls, LinkedCluster } from './linked-cluster.ts';
import { ControlTimeoutError } from './pool.ts';
import { startWiredHost, type WiredHost } from './wired-host.ts';

/** Connected wires, one pair per `[a, b]` of worker ids (or COORDINATOR), a's end first. */
type Pipes = (pairs: readonly (readonly [number, number])[]) => Promise<[Wire, Wire][]>;

/**
 * Every host of a plan in this thread, and every message between them and the coordinator through an
 * in-memory byte wire: each envelope encoded into one Uint8Array and decoded and checked on the other
 * side (Note [byte framing]), each host's init sent as a frame too, as a network would carry them.
 * The hosts are the shells, links and coordinator side of worker threads and of any process on
 * another machine (LinkedCluster); only the wires and the control calls (direct, on copies of their
 * arguments and answers) differ. Each host has its own storage pool, installed while its shell runs.
 */
export function createLoopbackCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
): Promise<LinkedCluster> {
  return sharedThreadCluster(plan, events, options, async (pairs) => pairs.map(() => bytePipe()));
}

/**
 * The loopback cluster over TCP connections on 127.0.0.1 (Note [stream framing]), opened through one
 * listener with the handshake (Note [tcp handshake]), as the hosts of node processes would be.
 */
export function createTcpLoopbackCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
): Promise<LinkedCluster> {
  return sharedThreadCluster(plan, events, options, (pairs) => tcpPipes(pairs));
}

async function sharedThreadCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
  pipes: Pipes,
): Promise<LinkedCluster> {
  const n = plan.workers;
  const talk = talkingPairs(plan);
  const pairs: [number, number][] = [];
  for (let w = 0; w < n; w++) pairs.push([COORDINATOR, w]);
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (talk[a * n + b] !== 0) pairs.push([a, b]);
  const ends = await pipes(pairs);
  const main = ends.slice(0, n);
  const peers: [number, Wire][][] = Array.from({ length: n }, () => []);
  for (const [i, [a, b]] of pairs.entries()) {
    if (a === COORDINATOR) continue;
    const [ab, ba] = ends[i]!;
    peers[a]!.push([b, ab]);
    peers[b]!.push([a, ba]);
  }
  const init = encodeInit(hostInit(plan, options, packGraph(plan.graph)));
  const stops = new Map<number, Stopped>();
  const hosts: WiredHost[] = [];
  try {
    for (let w = 0; w < n; w++) {
      const halt = sharedThreadHalt(plan, w, events, (stopped) => stops.set(w, stopped));
      const wired = { coordinator: main[w]![1], peers: peers[w]! };
      const host = await startWiredHost(w, decodeInit(init, edgeName(COORDINATOR, w)), wired, { halt });
      hosts.push(host);
      if (!samePlacement(host.placement, plan.placement))
        throw new InputError(
          `worker ${w} compiled a plan that places nodes differently from the coordinator's`,
          {
            worker: w,
          },
        );
    }
  } catch (err) {
    for (const h of hosts) h.shell.close();
    for (const wire of ends.flat()) wire.close();
    throw err;
  }
  let closed = false;
  const calls: HostCalls = {
    call(w, method, args, { transfer = [] } = {}) {
      if (closed)
        return Promise.reject(new RuntimeClosedError(`${method} on worker ${w}: the cluster is closed`));
      const stopped = stops.get(w);
      if (stopped !== undefined) {
        const { text, context } = describeStatus(plan, stopped.status);
        const { death } = stopped;
        return Promise.reject(
          death !== null
            ? new WorkerError(
                `${method}: ${death.message}`,
                { ...death.context, call: method },
                { cause: death },
              )
            : new ControlTimeoutError(`worker ${w} did not answer ${method}: it is blocked ${text}`, {
                ...context,
                worker: w,
                call: method,
              }),
        );
      }
      const control = hosts[w]!.control;
      // As if the call crossed a process boundary: the host gets copies of the arguments (their
      // buffers moved), and the caller a copy of the answer.
      const sent = structuredClone(args, { transfer: [...transfer] });
      return Promise.resolve()
        .then(() => structuredClone((control[method] as (...a: unknown[]) => unknown)(...sent)))
        .catch((err: Error) => {
          throw new WorkerError(
            `worker ${w}: ${method} failed: ${err?.name}: ${err?.message}`,
            { worker: w, call: method },
            { cause: err },
          );
        }) as Promise<never>;
    },
    async kill(w) {
      const death = new WorkerError(`worker ${w} was terminated`, { worker: w });
      stops.set(w, { status: IDLE_STATUS, death });
      hosts[w]!.shell.close();
      events.failure(death);
    },
    async stop(w, death) {
      stops.set(w, { status: stops.get(w)?.status ?? IDLE_STATUS, death });
      hosts[w]!.shell.close();
    },
    async close() {
      closed = true;
      for (const h of hosts) h.shell.close();
    },
  };
  return new LinkedCluster(
    plan,
    events,
    calls,
    main.map(([coordinatorEnd]) => coordinatorEnd),
  );
}
