import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { compile } from '../../src/partition/plan.ts';
import { type CostModel, traceCosts } from '../../src/sim/cost.ts';
import { projectDataParallel } from '../../src/sim/data-parallel.ts';
import { simulate } from '../../src/sim/simulate.ts';
import { mlpClassifier } from '../../src/train/models.ts';

// Note [projected data-parallel step]: with free messages and task costs proportional to the shard's
// rows, every replica runs the same tasks on 1/N of the rows, so the hosts' step on N replicas is the
// one-replica step over N, plus the fixed part, exactly (integer costs: no rounding).
describe('projectDataParallel: closed forms', () => {
  const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
  // Each task costs rows * (node id + 1) * (1 forward, 2 backward): unequal tasks, linear in rows.
  const linear = (rows: number): CostModel => ({
    task: (task, node) => rows * (node.id + 1) * (task.phase === 'forward' ? 1 : 2),
    message: () => 0,
  });
  const FIXED = 7;

  for (const paramPlacement of ['sharded', 'replicated'] as const) {
    it(`${paramPlacement} parameters: step(N) = step(1) / N + fixed for N = 1, 2, 4, 8 on a batch of 128`, () => {
      const one = projectDataParallel(graph, { replicas: 1, batchSize: 128, costsAt: linear, fixedMs: 0 });
      expect(one.messages).toBe(0);
      expect(one.makespan).toBeGreaterThan(0);
      for (const n of [1, 2, 4, 8]) {
        const p = projectDataParallel(graph, {
          replicas: n,
          batchSize: 128,
          costsAt: linear,
          fixedMs: FIXED,
          paramPlacement,
        });
        expect(p.shardRows).toBe(128 / n);
        expect(p.plan.replicas).toBe(n);
        expect(p.plan.workers).toBe(n);
        if (n > 1) expect(p.messages).toBeGreaterThan(0);
        expect(p.makespan).toBe(one.makespan / n);
        expect(p.stepMs).toBe(one.makespan / n + FIXED);
      }
    });
  }

  it('weak scaling: the same shard on every replica takes the one-replica step, whatever N', () => {
    const one = projectDataParallel(graph, { replicas: 1, batchSize: 32, costsAt: linear, fixedMs: FIXED });
    for (const n of [2, 4, 8]) {
      const p = projectDataParallel(graph, {
        replicas: n,
        batchSize: 32 * n,
        costsAt: linear,
        fixedMs: FIXED,
      });
      expect(p.stepMs).toBe(one.stepMs);
    }
  });

  it('a message latency lengthens the step on several replicas and not on one', () => {
    const latency = (rows: number): CostModel => ({ ...linear(rows), message: () => 1000 });
    const one = projectDataParallel(graph, { replicas: 1, batchSize: 128, costsAt: latency, fixedMs: 0 });
    const free = projectDataParallel(graph, { replicas: 2, batchSize: 128, costsAt: linear, fixedMs: 0 });
    const slow = projectDataParallel(graph, { replicas: 2, batchSize: 128, costsAt: latency, fixedMs: 0 });
    expect(one.makespan).toBe(
      projectDataParallel(graph, { replicas: 1, batchSize: 128, costsAt: linear, fixedMs: 0 }).makespan,
    );
    expect(slow.makespan).toBeGreaterThan(free.makespan);
  });

  it('refuses a batch that the replicas do not divide', () => {
    expect(() =>
      projectDataParallel(graph, { replicas: 3, batchSize: 128, costsAt: linear, fixedMs: 0 }),
    ).toThrow(InputError);
  });
});

// Note [message chores]: a host's core time for its messages, outside its tasks.
describe('simulator: message chores', () => {
  // One parameter, owned by worker 0 (sharded): its value goes to every other replica's host at the
  // start, each contribution to its gradient comes back to worker 0.
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  b.output('loss', b.sum(b.matmul(x, b.param('w', [4, 2]))));
  const tiny = b.build();
  const SEND = 3;
  const RECEIVE = 5;
  const chores = {
    task: () => 0,
    message: () => 0,
    send: (kind: string) => (kind === 'param' ? SEND : 0),
    receive: (kind: string) => (kind === 'gradient' ? RECEIVE : 0),
  };

  for (const n of [2, 3, 5]) {
    it(`free tasks, ${n} replicas: the owner copies its value ${n - 1} times, then sums ${n - 1} contributions: (n-1)(send + receive)`, () => {
      const plan = compile(tiny, { workers: n, replicas: n });
      const r = simulate(plan, { microbatches: 1, batchSize: 2 * n, cost: chores });
      expect(r.messages).toBe(2 * (n - 1));
      expect(r.makespan).toBe((n - 1) * (SEND + RECEIVE));
      expect(r.busy[0]).toBe((n - 1) * (SEND + RECEIVE));
      for (let w = 1; w < n; w++) expect(r.busy[w]).toBe(0);
    });
  }

  it("a host whose first work is a chore of its start runs it: a parameter's value sent to a host that waits for it", () => {
    // Per node on 4 workers, x, w, x * w and the loss each on their own host: w's host gets nothing
    // before w's gradient, which needs w's value at the host of x * w first.
    const g = new GraphBuilder();
    g.output('loss', g.sum(g.mul(g.input('x', ['B', 2]), g.param('w', [2]))));
    const graph = g.build();
    const plan = compile(graph, { workers: 4, placement: 'per-node' });
    const owner = plan.placement[0]![graph.node('w').id]!;
    const r = simulate(plan, { microbatches: 1, batchSize: 2, cost: chores });
    // Free tasks: the value's copy, then two gradients taken in turn (the loss's by the host of x * w,
    // then w's by its owner).
    expect(r.makespan).toBe(SEND + 2 * RECEIVE);
    expect(r.busy[owner]).toBe(SEND + RECEIVE);
  });

  it('chores of 0 ms change nothing: the MLP on 4 replicas as without send and receive', () => {
    const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
    const plan = compile(graph, { workers: 4, replicas: 4 });
    const cost = { task: (_: unknown, node: { id: number }) => node.id + 1, message: () => 1 };
    const plain = simulate(plan, { microbatches: 1, batchSize: 128, cost });
    const zero = simulate(plan, {
      microbatches: 1,
      batchSize: 128,
      cost: { ...cost, send: () => 0, receive: () => 0 },
    });
    expect(zero.makespan).toBe(plain.makespan);
    expect(zero.busy).toEqual(plain.busy);
    expect(zero.trace.flows).toEqual(plain.trace.flows);
  });
});

describe('traceCosts: the statistic', () => {
  it('a stalled task moves the mean and not the median: (1, 2, 30) -> mean 11, median 2', () => {
    const span = (end: number) => ({
      worker: 0,
      phase: 'F' as const,
      stage: 0,
      mb: 0,
      start: 0,
      end,
      node: 3,
    });
    const trace = {
      source: 'real' as const,
      workers: 1,
      spans: [span(1), span(30), span(2)],
      flows: [],
      counters: [],
    };
    const task = { node: 3, phase: 'forward' } as Parameters<CostModel['task']>[0];
    const node = {} as Parameters<CostModel['task']>[1];
    expect(traceCosts(trace).task(task, node)).toBe(11);
    expect(traceCosts(trace, { statistic: 'median' }).task(task, node)).toBe(2);
  });
});
