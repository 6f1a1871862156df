import type { ClusterFactory } from './cluster.ts';

/**
 * Every cluster by its `mode` name, each module loaded on first use (a run on one thread never loads
 * worker_threads' side). A new transport is a new cluster file and one line here.
 */
export const CLUSTERS = {
  threads: () => import('./threads.ts').then((m) => m.createThreadsCluster),
  'in-process': () => import('./in-process.ts').then((m) => m.createInProcessCluster),
  loopback: () => import('./loopback.ts').then((m) => m.createLoopbackCluster),
} as const satisfies Record<string, () => Promise<ClusterFactory>>;

export type ClusterMode = keyof typeof CLUSTERS;
export const CLUSTER_MODES = Object.keys(CLUSTERS) as ClusterMode[];
