import type { ClusterFactory } from './cluster.ts';

interface ClusterEntry {
  /** The factory, its module loaded on first use (a run on one thread never loads worker_threads' side). */
  readonly load: () => Promise<ClusterFactory>;
  /** The hosts run in this thread: an op this thread defines is known to them (Note [user ops on workers]). */
  readonly sameThread: boolean;
}

/** Every cluster by its `mode` name. A new transport is a new cluster file and one line here. */
export const CLUSTERS = {
  threads: { load: () => import('./threads.ts').then((m) => m.createThreadsCluster), sameThread: false },
  'in-process': {
    load: () => import('./in-process.ts').then((m) => m.createInProcessCluster),
    sameThread: true,
  },
  loopback: { load: () => import('./loopback.ts').then((m) => m.createLoopbackCluster), sameThread: true },
  'tcp-loopback': {
    load: () => import('./loopback.ts').then((m) => m.createTcpLoopbackCluster),
    sameThread: true,
  },
  nats: { load: () => import('./nats-cluster.ts').then((m) => m.createNatsCluster), sameThread: false },
} as const satisfies Record<string, ClusterEntry>;

export type ClusterMode = keyof typeof CLUSTERS;
export const CLUSTER_MODES = Object.keys(CLUSTERS) as ClusterMode[];
