import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import type { CostModel } from '../../src/sim/cost.ts';
import { projectDataParallel } from '../../src/sim/data-parallel.ts';
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
      const p = projectDataParallel(graph, { replicas: n, batchSize: 32 * n, costsAt: linear, fixedMs: FIXED });
      expect(p.stepMs).toBe(one.stepMs);
    }
  });

  it('a message latency lengthens the step on several replicas and not on one', () => {
    const latency = (rows: number): CostModel => ({ ...linear(rows), message: () => 1000 });
    const one = projectDataParallel(graph, { replicas: 1, batchSize: 128, costsAt: latency, fixedMs: 0 });
    const free = projectDataParallel(graph, { replicas: 2, batchSize: 128, costsAt: linear, fixedMs: 0 });
    const slow = projectDataParallel(graph, { replicas: 2, batchSize: 128, costsAt: latency, fixedMs: 0 });
    expect(one.makespan).toBe(projectDataParallel(graph, { replicas: 1, batchSize: 128, costsAt: linear, fixedMs: 0 }).makespan);
    expect(slow.makespan).toBeGreaterThan(free.makespan);
  });

  it('refuses a batch that the replicas do not divide', () => {
    expect(() => projectDataParallel(graph, { replicas: 3, batchSize: 128, costsAt: linear, fixedMs: 0 })).toThrow(
      InputError,
    );
  });
});
