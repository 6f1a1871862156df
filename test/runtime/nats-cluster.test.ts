// Hosts on node processes, found and controlled through NATS (Note [rendezvous]): the same steps as
// on threads, bitwise equal to the reference, over direct TCP links or NATS subjects; node deaths,
// hangs and a lost server fail the step naming what was lost; the rendezvous names who is missing.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../src/actor/host.ts';
import { InputError, WorkerError } from '../../src/errors.ts';
import { label } from '../../src/graph/graph.ts';
import { startNode } from '../../src/runtime/node-process.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { mlp } from '../support/models.ts';
import { describeNats, natsUrl, privateNatsServer } from '../support/nats.ts';
import { type SpawnedNode, spawnCli, spawnNode, stopAll } from '../support/node-processes.ts';
import { expectMatchesReference } from '../support/reference.ts';

afterAll(() => stopAll());

const url = () => natsUrl()!;
let clusters = 0;
/** A cluster name of this test's own. */
const fresh = (what: string) => `${what}-${process.pid}-${clusters++}`;

async function rejection(p: Promise<unknown>): Promise<Error & { context: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { context: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

type Case = { name: string; nodes: number; options: Omit<RuntimeOptions, 'params' | 'cluster'> };

const CASES: Case[] = [
  {
    name: '2 nodes, 2 replicas, 2 microbatches',
    nodes: 2,
    options: { workers: 2, replicas: 2, microbatches: 2 },
  },
  { name: '2 nodes, per-node placement', nodes: 2, options: { workers: 2, placement: 'per-node' } },
  { name: '2 nodes, 2 stages, 1F1B', nodes: 2, options: { workers: 2, schedule: '1f1b', microbatches: 4 } },
  {
    name: '3 nodes of 2 hosts, 2 replicas x 3 stages, GPipe, sharded parameters',
    nodes: 3,
    options: { workers: 6, replicas: 2, schedule: 'gpipe', microbatches: 3, paramPlacement: 'sharded' },
  },
  {
    name: '3 nodes, 3 replicas, replicated parameters',
    nodes: 3,
    options: { workers: 3, replicas: 3, paramPlacement: 'replicated' },
  },
];

describeNats('node processes: the runtime matrix', () => {
  const cluster = fresh('matrix');
  beforeAll(async () => {
    await Promise.all(
      ['a', 'b', 'c'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name, hosts: 2 })),
    );
  }, 60_000);

  describe.each(['tcp', 'nats'] as const)('data over %s', (data) => {
    it.each(CASES.map((c) => [c.name, c] as const))(
      '%s: loss and gradients bitwise equal to the reference, two steps',
      async (_, c) => {
        const model = mlp();
        const rt = await createRuntime(model.graph, {
          ...c.options,
          params: model.params,
          cluster: { nats: url(), name: cluster, nodes: c.nodes, data },
        });
        try {
          for (const seed of [1, 2])
            await expectMatchesReference(model.graph, model.params, model.feeds(24, seed), c.options, rt);
        } finally {
          await rt.close();
        }
      },
      30_000,
    );
  });
});
