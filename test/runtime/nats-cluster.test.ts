// Hosts on node processes, found and controlled through NATS (Note [rendezvous]): the same steps as
// on threads, bitwise equal to the reference, over direct TCP links or NATS subjects; node deaths,
// hangs and a lost server fail the step naming what was lost; the rendezvous names who is missing.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TaskInfo } from '../../src/actor/host.ts';
import { main } from '../../src/cli/main.ts';
import { InputError, WorkerError } from '../../src/errors.ts';
import { label } from '../../src/graph/graph.ts';
import { COORDINATOR, PROTOCOL_VERSION } from '../../src/protocol/envelope.ts';
import { encodeFrame } from '../../src/protocol/frame.ts';
import { dataSubject, splitFrame } from '../../src/protocol/nats-wire.ts';
import { startNode } from '../../src/runtime/node-process.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { KERNELS_OFFERED, KERNELS_VARIANT, selectKernels } from '../../src/tensor/default-kernels.ts';
import { makeCerts } from '../support/certs.ts';
import { mlp, wideMlp } from '../support/models.ts';
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

/** A runtime of the MLP on `nodes` nodes of `cluster`, that reports where it pauses. */
async function pausable(
  cluster: string,
  extra: Partial<RuntimeOptions['cluster'] & object> = {},
  servers = url(),
) {
  const model = mlp();
  let onPause!: (p: { worker: number; task: TaskInfo }) => void;
  const paused = new Promise<{ worker: number; task: TaskInfo }>((resolve) => (onPause = resolve));
  const rt = await createRuntime(model.graph, {
    workers: 2,
    replicas: 2,
    params: model.params,
    cluster: { nats: servers, name: cluster, nodes: 2, heartbeatMs: 100, deadAfterMs: 3000, ...extra },
    onFailpoint: (worker, _, task) => onPause({ worker, task }),
  });
  const target = model.graph.nodes.find((n) => n.op === 'matmul')!;
  await rt.setFailpoints([{ worker: 1, node: target.id, phase: 'forward', mb: 0, action: 'pause' }]);
  return { rt, model, paused, target };
}

describeNats('node processes: data over NATS subjects', () => {
  it('a chunk of another run on a data subject is dropped and counted; the steps stay bitwise equal', async () => {
    const cluster = fresh('stale');
    await Promise.all(['x', 'y'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name })));
    const model = mlp();
    const options = { workers: 2, replicas: 2 };
    const rt = await createRuntime(model.graph, {
      ...options,
      params: model.params,
      cluster: { nats: url(), name: cluster, nodes: 2, data: 'nats' },
    });
    const nc = await connect({ servers: url() });
    try {
      await expectMatchesReference(model.graph, model.params, model.feeds(24, 1), options, rt);
      // A stale process's chunk (another cluster id) on the coordinator's link to worker 0.
      const frame = encodeFrame({
        v: PROTOCOL_VERSION,
        gen: 9,
        from: COORDINATOR,
        count: 0,
        head: new Int32Array(0),
        payload: new ArrayBuffer(0),
        buffers: [],
        objects: [],
      });
      for (const chunk of splitFrame(frame, 12345, 0, 1 << 20))
        nc.publish(dataSubject(cluster, COORDINATOR, 0), chunk);
      await nc.flush();
      await expectMatchesReference(model.graph, model.params, model.feeds(24, 1), options, rt);
      const stats = await rt.stats();
      expect(stats[0]!.dropped).toBeGreaterThanOrEqual(1);
    } finally {
      await nc.close();
      await rt.close();
    }
  });
});

describeNats('node processes: mutual TLS on the data links', () => {
  const certs = makeCerts();
  afterAll(() => certs.remove());

  it('nodes started with certificates serve a runtime that asks for TLS, bitwise; one that does not is refused', async () => {
    const cluster = fresh('tls');
    await Promise.all(
      ['x', 'y'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name, dataTls: certs.good })),
    );
    const model = mlp();
    const options = { workers: 2, replicas: 2 };
    const plain = await rejection(
      createRuntime(model.graph, {
        ...options,
        params: model.params,
        cluster: { nats: url(), name: cluster, nodes: 2 },
      }),
    );
    expect(plain.message).toMatch(/node [xy] requires TLS on its data links/);
    const rt = await createRuntime(model.graph, {
      ...options,
      params: model.params,
      cluster: { nats: url(), name: cluster, nodes: 2, dataTls: certs.good },
    });
    try {
      await expectMatchesReference(model.graph, model.params, model.feeds(24, 1), options, rt);
    } finally {
      await rt.close();
    }
  });
});

describeNats('backflow train --nats', () => {
  it('trains on node processes found through NATS', async () => {
    const cluster = fresh('cli');
    await Promise.all(['x', 'y'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name })));
    const dir = mkdtempSync(join(tmpdir(), 'backflow-nats-cli-'));
    const out: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const code = await main([
        'train',
        '--data',
        'spirals',
        '--epochs',
        '2',
        '--workers',
        '2',
        '--replicas',
        '2',
        '--nats',
        url(),
        '--cluster',
        cluster,
        '--nodes',
        '2',
        '--loss-curve',
        join(dir, 'curve.svg'),
      ]);
      expect(code).toBe(0);
      expect(out.join('\n')).toMatch(/test accuracy \d+\.\d+%/);
    } finally {
      log.mockRestore();
      write.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describeNats('node processes: faults', () => {
  it('kill -9 of a node in the middle of a forward: the step fails naming node, worker, node actor, microbatch and phase', async () => {
    const cluster = fresh('kill');
    const [, y] = await Promise.all(
      ['x', 'y'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name })),
    );
    const { rt, model, paused, target } = await pausable(cluster);
    try {
      const step = rt.step(model.feeds(24, 1));
      const { worker } = await paused;
      expect(worker).toBe(1);
      y!.child.kill('SIGKILL');
      const error = await rejection(step);
      expect(error).toBeInstanceOf(WorkerError);
      expect(error.message).toMatch(/^worker 1 on node y: .*it was last seen during the forward of node/);
      expect(error.context).toMatchObject({
        worker: 1,
        nodeProcess: 'y',
        node: label(target),
        microbatch: 0,
        phase: 'forward',
      });
      // The runtime is broken for good, and says why at once.
      await expect(rt.getParams()).rejects.toThrow(/worker 1 on node y/);
    } finally {
      await rt.close();
    }
  });

  it('a node that hangs (SIGSTOP): the step fails once its heartbeats stop', async () => {
    const cluster = fresh('hang');
    const [, y] = await Promise.all(
      ['x', 'y'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name })),
    );
    const { rt, model, paused } = await pausable(cluster);
    try {
      const step = rt.step(model.feeds(24, 1));
      await paused;
      y!.child.kill('SIGSTOP');
      const error = await rejection(step);
      expect(error).toBeInstanceOf(WorkerError);
      expect(error.message).toMatch(/^worker 1 on node y: its node is silent \(no heartbeat for \d+ ms\)/);
    } finally {
      y!.child.kill('SIGKILL');
      await rt.close();
    }
  });

  it('the NATS server killed mid-step fails the step; once it is back, the same nodes serve a new runtime', async () => {
    const server = await privateNatsServer();
    const cluster = fresh('server');
    try {
      const nodes = await Promise.all(
        ['x', 'y'].map((name) =>
          spawnNode({ nats: { servers: server.url }, cluster, name, reconnectForMs: 30_000 }),
        ),
      );
      const { rt, model, paused } = await pausable(cluster, {}, server.url);
      const step = rt.step(model.feeds(24, 1));
      await paused;
      await server.kill();
      const error = await rejection(step);
      expect(error).toBeInstanceOf(WorkerError);
      expect(error.message).toMatch(/lost its NATS server|worker \d on node [xy]/);
      await rt.close();
      const again = await privateNatsServer({ port: server.port });
      try {
        await Promise.all(nodes.map((n) => n.printed('reconnected to NATS')));
        const fresh2 = mlp();
        const options = { workers: 2, replicas: 2 };
        const rt2 = await createRuntime(fresh2.graph, {
          ...options,
          params: fresh2.params,
          cluster: { nats: again.url, name: cluster, nodes: 2 },
        });
        try {
          await expectMatchesReference(fresh2.graph, fresh2.params, fresh2.feeds(24, 2), options, rt2);
        } finally {
          await rt2.close();
        }
      } finally {
        await again.stop();
      }
    } finally {
      await server.stop();
    }
  });

  it('a wrong token is refused at join, by the node and by the coordinator; the right one joins', async () => {
    const server = await privateNatsServer({ args: ['--auth', 's3cret-token'] });
    const cluster = fresh('auth');
    try {
      await expect(
        startNode({ nats: { servers: server.url, token: 'wrong' }, cluster, hosts: 1 }),
      ).rejects.toThrow(/cannot connect to NATS.*refused the credentials/);
      const model = mlp();
      await expect(
        createRuntime(model.graph, {
          workers: 1,
          params: model.params,
          cluster: { nats: server.url, name: cluster, nodes: 1, token: 'wrong' },
        }),
      ).rejects.toThrow(InputError);
      await spawnNode({ nats: { servers: server.url, token: 's3cret-token' }, cluster, name: 'ok' });
      const options = { workers: 1 };
      const rt = await createRuntime(model.graph, {
        ...options,
        params: model.params,
        cluster: { nats: server.url, name: cluster, nodes: 1, token: 's3cret-token' },
      });
      try {
        await expectMatchesReference(model.graph, model.params, model.feeds(8, 1), options, rt);
      } finally {
        await rt.close();
      }
    } finally {
      await server.stop();
    }
  });

  it("nodes run the coordinator's kernels, bitwise; a node that cannot run them is refused at join", async () => {
    if (!KERNELS_OFFERED.includes('wasm relaxed-simd')) return; // one variant only: nothing to choose
    const [cluster, off] = [fresh('kernels'), fresh('kernels-off')];
    await Promise.all([
      spawnNode({ nats: { servers: url() }, cluster, name: 'k' }),
      spawnNode({
        nats: { servers: url() },
        cluster: off,
        name: 'simd',
        env: { BACKFLOW_WASM_RELAXED: '0' },
      }),
    ]);
    const model = wideMlp();
    const options = { workers: 1 };
    const cluster1 = { nats: url(), name: cluster, nodes: 1 };
    // The coordinator on simd128: the node's host switches from its own default, relaxed SIMD.
    selectKernels('wasm simd128', 0);
    try {
      const rt = await createRuntime(model.graph, { ...options, params: model.params, cluster: cluster1 });
      try {
        await expectMatchesReference(model.graph, model.params, model.feeds(64), options, rt);
      } finally {
        await rt.close();
      }
    } finally {
      selectKernels(KERNELS_VARIANT, 0);
    }
    await expect(
      createRuntime(model.graph, { ...options, params: model.params, cluster: { ...cluster1, name: off } }),
    ).rejects.toThrow(
      /node simd of cluster \S+ cannot join: it runs kernels wasm simd128, ts only, not the coordinator's wasm relaxed-simd/,
    );
  }, 30_000);

  it('the rendezvous error names the nodes that joined and the one that is late; a second coordinator is refused', async () => {
    const cluster = fresh('late');
    await Promise.all(['p', 'q'].map((name) => spawnNode({ nats: { servers: url() }, cluster, name })));
    const model = mlp();
    const error = await rejection(
      createRuntime(model.graph, {
        workers: 2,
        params: model.params,
        cluster: { nats: url(), name: cluster, nodes: ['p', 'q', 'late'], joinTimeoutMs: 1000 },
      }),
    );
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/waited 1000 ms for p, q, late; joined: p, q; missing: late/);
    const rt = await createRuntime(model.graph, {
      workers: 2,
      params: model.params,
      cluster: { nats: url(), name: cluster, nodes: 2 },
    });
    try {
      const second = await rejection(
        createRuntime(model.graph, {
          workers: 1,
          params: model.params,
          cluster: { nats: url(), name: cluster, nodes: 1 },
        }),
      );
      expect(second).toBeInstanceOf(InputError);
      expect(second.message).toMatch(
        new RegExp(`cluster ${cluster} already has a coordinator: .*pid ${process.pid}`),
      );
    } finally {
      await rt.close();
    }
  });

  it('a node process (backflow node) exits by itself when its coordinator disappears', async () => {
    const cluster = fresh('orphan');
    const node: SpawnedNode = spawnCli([
      '--nats',
      url(),
      '--cluster',
      cluster,
      '--name',
      'orphan',
      '--listen',
      '127.0.0.1',
    ]);
    await node.printed('joined cluster');
    const coordinator = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('../fixtures/coordinator.ts', import.meta.url)),
        JSON.stringify({ nats: url(), name: cluster, nodes: 1, heartbeatMs: 100, deadAfterMs: 2000 }),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      coordinator.stdout!.on('data', (d: Buffer) => d.toString().includes('created') && resolve());
      coordinator.once('exit', (code) => reject(new Error(`the coordinator exited (${code})`)));
    });
    await node.printed('serving runtime');
    coordinator.kill('SIGKILL');
    expect(await node.exited).toBe(1);
    expect(node.output()).toMatch(/coordinator .* silent for \d+ ms: it is gone/);
  });
});
