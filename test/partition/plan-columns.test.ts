import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.ts';
import { laneGraph } from '../../src/graph/generators.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { type CompileOptions, compile, type Plan } from '../../src/partition/plan.ts';
import { type PlanColumns, planColumns, planFromColumns } from '../../src/partition/plan-columns.ts';
import { sharedColumns } from '../../src/protocol/shared-columns.ts';
import { SHARED_FROM_BYTES } from '../../src/util/shared-memory.ts';
import { mlp } from '../support/models.ts';

/** What a worker thread gets: the columns after a structured clone. */
const shipped = (plan: Plan): PlanColumns => structuredClone(planColumns(plan));

const comparable = (plan: Plan) => ({
  ...planColumns(plan),
  consumers: plan.consumers,
  crossEdges: plan.crossEdges,
  cells: plan.grad.cells,
});

describe('planFromColumns (Note [shipped plan])', () => {
  it('rebuilds the plan compile made, on every strategy and with replicas', () => {
    const cases: [Graph, CompileOptions][] = [
      [laneGraph(6, 3), { workers: 2, placement: 'per-node' }],
      [laneGraph(4, 2), { workers: 3, placement: 'stages' }],
      [mlp().graph, { workers: 4, replicas: 2, placement: 'min-comm' }],
      [mlp().graph, { workers: 2, replicas: 2, paramPlacement: 'replicated' }],
    ];
    for (const [graph, options] of cases) {
      const plan = compile(graph, options);
      const again = planFromColumns(graph, shipped(plan));
      expect(comparable(again)).toEqual(comparable(plan));
    }
  });

  it('refuses columns that do not hold together with the graph or each other, with a FormatError', () => {
    const graph = laneGraph(3, 2);
    const plan = compile(graph, { workers: 2, placement: 'per-node' });
    const corruptions: ((c: PlanColumns & Record<string, unknown>) => void)[] = [
      (c) => (c.placement[0]![3] = 2),
      (c) => (c.stageOf[1] = 7),
      (c) => ((c as { workers: number }).workers = 0),
      (c) => (c.grad.expected[2] = -1),
      (c) => (c.consumerEdges.slot[0] = 5),
      (c) => (c.consumerEdges.node[1] = 0),
      (c) => (c.consumerEdges.start[1] = 999),
      (c) => ((c as { placement: unknown }).placement = []),
      (c) => ((c as { params: unknown }).params = [0]),
      (c) => ((c as { bytes: unknown }).bytes = new Float32Array(graph.size)),
    ];
    for (const [k, corrupt] of corruptions.entries()) {
      const c = shipped(plan) as PlanColumns & Record<string, unknown>;
      corrupt(c);
      expect(() => planFromColumns(graph, c), `corruption ${k}`).toThrow(FormatError);
    }
  });

  it('makes large columns in shared memory, which the handoff to threads passes on without a copy', () => {
    // Note [columns in shared memory]: 68.5k nodes put even a byte per node over the threshold.
    const graph = laneGraph(100, 170);
    const plan = compile(graph, { workers: 2, placement: 'per-node' });
    const c = planColumns(plan);
    const large = [
      c.placement[0]!,
      c.stageOf,
      c.bytes,
      c.grad.forward,
      c.grad.needsGrad,
      c.grad.expected,
      c.consumerEdges.start,
      c.consumerEdges.node,
      c.consumerEdges.slot,
    ];
    for (const column of large) {
      expect(column.byteLength).toBeGreaterThanOrEqual(SHARED_FROM_BYTES);
      expect(column.buffer).toBeInstanceOf(SharedArrayBuffer);
    }
    const handed = sharedColumns(c);
    expect(handed.placement[0]).toBe(c.placement[0]);
    expect(handed.consumerEdges.node).toBe(c.consumerEdges.node);
    expect(handed.grad.expected).toBe(c.grad.expected);
    // A small plan's columns stay ordinary, and the handoff copies them into shared memory.
    const small = planColumns(compile(laneGraph(3, 2), { workers: 2, placement: 'per-node' }));
    expect(small.stageOf.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    const copied = sharedColumns(small);
    expect(copied.stageOf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(copied.stageOf)).toEqual(Array.from(small.stageOf));
    // The worker checks shared columns as it checks cloned ones.
    expect(planFromColumns(graph, handed).placement[0]).toBe(c.placement[0]);
  });
});
