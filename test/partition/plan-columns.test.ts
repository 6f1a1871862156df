import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.ts';
import { laneGraph } from '../../src/graph/generators.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { type CompileOptions, compile, type Plan } from '../../src/partition/plan.ts';
import { type PlanColumns, planColumns, planFromColumns } from '../../src/partition/plan-columns.ts';
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
});
