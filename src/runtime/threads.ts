import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { transfer } from 'comlink';
import { InputError, type WorkerError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import { type PlanColumns, planColumns } from '../partition/plan-columns.ts';
import type { WorkerControl } from '../protocol/control.ts';
import { type PackedGraph, packGraph } from '../protocol/packed-graph.ts';
import { portWire } from '../protocol/port-wire.ts';
import { sharedColumns } from '../protocol/shared-columns.ts';
import {
  type ClusterEvents,
  type ClusterOptions,
  describeStatus,
  hostInit,
  samePlacement,
  talkingPairs,
} from './cluster.ts';
import { type HostCalls, LinkedCluster } from './linked-cluster.ts';
import { WorkerPool } from './pool.ts';
import { hostWorkerModule } from './source-worker.ts';

/**
 * The young generation of each worker's heap. A step makes millions of short-lived objects (messages,
 * tensors, tasks) while the backward keeps activations alive; with V8's default (48 MiB) scavenges
 * took about a quarter of a worker's time on the million-node graph, which moves about 1.4x the actor
 * messages/s with 192 MiB (figures: docs/measurements.md). V8 grows it only as far as it is used.
 */
export const YOUNG_GENERATION_MB = 192;

/**
 * The hosts of a plan on worker threads: a supervised pool (one worker per plan worker), one
 * MessageChannel per pair of workers that exchange data, and one data channel between the coordinator
 * and each worker for step starts, feeds and reports. Control calls go through the pool's guarded
 * comlink proxies (Note [guarded calls] in pool.ts).
 */
export async function createThreadsCluster(
  plan: Plan,
  events: ClusterEvents,
  options: ClusterOptions,
): Promise<LinkedCluster> {
  const n = plan.workers;
  const peers: [number, MessagePort][][] = Array.from({ length: n }, () => []);
  const talk = talkingPairs(plan);
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      if (talk[a * n + b] === 0) continue;
      const { port1, port2 } = new MessageChannel();
      peers[a]!.push([b, port1]);
      peers[b]!.push([a, port2]);
    }
  }
  const channels = Array.from({ length: n }, () => new MessageChannel());
  // Packed once, while the workers boot (the first init call), and copied into shared memory, which
  // crosses to each worker without a copy (Note [shared columns]).
  let graph: PackedGraph | null = null;
  let columns: PlanColumns | null = null;
  let pool: WorkerPool<WorkerControl>;
  try {
    pool = await WorkerPool.create<WorkerControl>({
      ...(await hostWorkerModule(options.ops.length > 0)),
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
      size: n,
      describe: (status) => describeStatus(plan, status),
      onFailure: (error: WorkerError) => events.failure(error),
      init: async (w, api) => {
        graph ??= packGraph(plan.graph, { shared: true });
        columns ??= sharedColumns(planColumns(plan));
        const init = { ...hostInit(plan, options, graph), plan: columns };
        const ports = { coordinator: channels[w]!.port2, peers: peers[w]! };
        const placement = await api.init(
          init,
          transfer(ports, [ports.coordinator, ...ports.peers.map(([, p]) => p)]),
        );
        if (!samePlacement(placement, plan.placement)) {
          throw new InputError(
            `worker ${w} compiled a plan that places nodes differently from the coordinator's`,
            {
              worker: w,
              expected: 'the same placement (compile is pure)',
            },
          );
        }
      },
    });
  } catch (err) {
    for (const { port1, port2 } of channels) {
      port1.close();
      port2.close();
    }
    for (const list of peers) for (const [, p] of list) p.close();
    throw err;
  }
  const calls: HostCalls = {
    call: (w, method, args, { timeoutMs, transfer: list } = {}) =>
      pool.call(
        w,
        method,
        (api) => {
          const [first, ...rest] = args as unknown[];
          const sent = list === undefined || args.length === 0 ? args : [transfer(first, [...list]), ...rest];
          return (api[method] as unknown as (...a: unknown[]) => Promise<never>)(...sent);
        },
        timeoutMs,
      ),
    kill: (w) => pool.kill(w),
    stop: (w, death) => pool.stop(w, death),
    close: () => pool.close(),
  };
  const cluster = new LinkedCluster(
    plan,
    events,
    calls,
    channels.map((c) => portWire(c.port1)),
  );
  // Listening, the ports would keep the process alive (Note [idle workers] in pool.ts).
  for (const { port1 } of channels) port1.unref();
  clusters.set(plan, cluster);
  return cluster;
}

const clusters = new WeakMap<Plan, LinkedCluster>();

/** The threads cluster running a plan (`runtime.plan`), for tests that kill a worker from outside. */
export function threadsClusterOf(plan: Plan): LinkedCluster | undefined {
  return clusters.get(plan);
}
