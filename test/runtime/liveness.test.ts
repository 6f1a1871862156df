// The coordinator's view of its node processes (Liveness, Note [rendezvous]) driven by hand: each way
// a node can be lost (a death it reports, a broken data link, silence past deadAfterMs, the NATS
// server gone) fails the step once with a WorkerError naming node, worker and what the worker was
// last seen doing (node actor, microbatch, phase); later calls to its workers get the same error.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WorkerError } from '../../src/errors.ts';
import { label } from '../../src/graph/graph.ts';
import { compile } from '../../src/partition/plan.ts';
import { packValue } from '../../src/protocol/value-codec.ts';
import { Liveness } from '../../src/runtime/liveness.ts';
import type { Announcement, ResolvedCluster } from '../../src/runtime/rendezvous.ts';
import { mlp } from '../support/models.ts';

const announced = (id: string, name: string): Announcement =>
  ({ id, name, hosts: 2, address: '127.0.0.1', port: 0, busy: null, tls: false }) as unknown as Announcement;

const spec = { name: 'c1', deadAfterMs: 1000, heartbeatMs: 100 } as ResolvedCluster;

/** Two nodes, a (workers 0 and 1) and b (workers 2 and 3), and the failures the runtime was told of. */
function watch() {
  const model = mlp();
  const plan = compile(model.graph, { workers: 4, replicas: 4 });
  const failures: WorkerError[] = [];
  const live = new Liveness(
    plan,
    { report: () => {}, failure: (e) => void failures.push(e) },
    [announced('id-a', 'a'), announced('id-b', 'b')],
    [
      [0, 1],
      [2, 3],
    ],
    spec,
  );
  const matmul = model.graph.nodes.find((n) => n.op === 'matmul')!;
  const event = (e: unknown) => live.event(packValue(e, 'a test event'));
  return { live, failures, matmul, event };
}

afterEach(() => vi.useRealTimers());

describe('Liveness', () => {
  it('a death a node reports names node, worker, node actor, microbatch and phase; once per node', () => {
    const { live, failures, matmul, event } = watch();
    const status = { phase: 'backward', node: matmul.id, replica: 3, mb: 0, step: 4 };
    event({ kind: 'death', node: 'id-b', worker: 3, how: 'exited with code 9', status });
    event({ kind: 'death', node: 'id-b', worker: 2, how: 'exited with code 9', status });
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toBe(
      `worker 3 on node b: exited with code 9; it was last seen during the backward of node ${label(matmul)} (matmul), replica 3, microbatch 0, step 4`,
    );
    expect(failures[0]!.context).toMatchObject({
      worker: 3,
      nodeProcess: 'b',
      node: label(matmul),
      microbatch: 0,
      phase: 'backward',
      step: 4,
    });
    expect(live.gone(1)).toBe(true);
    expect(live.gone(0)).toBe(false);
    expect(live.deathOf(2)).toBe(failures[0]);
    expect(live.deathOf(0)).toBeNull();
  });

  it('a broken data link names the worker and where its last heartbeat saw it', () => {
    const { live, failures, matmul, event } = watch();
    event({
      kind: 'beat',
      node: 'id-a',
      statuses: [[1, { phase: 'forward', node: matmul.id, replica: 1, mb: 0, step: 0 }]],
    });
    live.lostLink(1, new Error('read ECONNRESET'));
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toMatch(
      /^worker 1 on node a: its data link to the coordinator broke \(read ECONNRESET\); it was last seen during the forward of node /,
    );
    expect(failures[0]!.context).toMatchObject({
      worker: 1,
      nodeProcess: 'a',
      microbatch: 0,
      phase: 'forward',
    });
  });

  it('events of other nodes, of workers a node does not hold, or that do not decode are ignored', () => {
    const { live, failures, event } = watch();
    event({ kind: 'death', node: 'id-stranger', worker: 0, how: 'x' });
    event({ kind: 'death', node: 'id-a', worker: 3, how: 'x' });
    live.event(new Uint8Array([0xc1, 0xff]));
    event({ kind: 'beat', node: 'id-a', statuses: [[0, { phase: 'nonsense' }], 'junk'] });
    expect(failures).toEqual([]);
  });

  it('a node silent past deadAfterMs fails once; one that keeps beating does not', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const { live, failures, event } = watch();
    vi.advanceTimersByTime(600);
    event({ kind: 'beat', node: 'id-a', statuses: [] });
    vi.advanceTimersByTime(600);
    live.check();
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toMatch(
      /^worker 2 on node b: its node is silent \(no heartbeat for 1200 ms\)/,
    );
    live.check();
    expect(failures).toHaveLength(1);
    expect(live.gone(0)).toBe(false);
  });

  it('a lost NATS server fails every worker, once; after stop nothing fails', () => {
    const { live, failures } = watch();
    live.lostNats('disconnect');
    live.lostNats('close');
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toBe(
      'the coordinator lost its NATS server (disconnect): the nodes cannot be reached',
    );
    expect(failures[0]!.context).toMatchObject({ phase: 'nats', cluster: 'c1' });
    for (const w of [0, 1, 2, 3]) expect(live.deathOf(w)).toBe(failures[0]);
    const stopped = watch();
    stopped.live.stop();
    stopped.live.lostNats('disconnect');
    stopped.live.lostLink(0, new Error('gone'));
    expect(stopped.failures).toEqual([]);
  });
});
