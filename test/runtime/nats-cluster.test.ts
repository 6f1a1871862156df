// Hosts on node processes, found and controlled through NATS (Note [rendezvous]): the same steps as
// on threads, bitwise equal to the reference, over direct TCP links or NATS subjects.
import { afterAll, expect, it } from 'vitest';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { mlp } from '../support/models.ts';
import { describeNats, natsUrl } from '../support/nats.ts';
import { spawnNode, stopAll } from '../support/node-processes.ts';
import { expectMatchesReference } from '../support/reference.ts';

afterAll(() => stopAll());

describeNats('node processes', () => {
  it('two nodes, data parallel over TCP: bitwise equal to the reference', async () => {
    const cluster = `smoke-${process.pid}`;
    await Promise.all(
      [0, 1].map((i) => spawnNode({ nats: { servers: natsUrl()! }, cluster, name: `n${i}` })),
    );
    const model = mlp();
    const rt = await createRuntime(model.graph, {
      workers: 2,
      replicas: 2,
      params: model.params,
      cluster: { nats: natsUrl()!, name: cluster, nodes: 2 },
    });
    try {
      await expectMatchesReference(
        model.graph,
        model.params,
        model.feeds(24, 0),
        { workers: 2, replicas: 2 },
        rt,
      );
    } finally {
      await rt.close();
    }
  });
});
