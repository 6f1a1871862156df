// The plan as the coordinator hands it to its worker threads: its arrays, not the options to compile it again.
import type { GradPlan } from '../autodiff/plan.ts';
import { gradPlanOf } from '../autodiff/plan.ts';
import { FormatError } from '../errors.ts';
import type { Graph } from '../graph/graph.ts';
import { PLACEMENT_STRATEGIES } from './placement.ts';
import { assemblePlan, type Plan, type PlanParts } from './plan.ts';

// Note [shipped plan]
// compile is pure, so a host could compile the coordinator's plan again from its options, and each
// one did: on the million-node lane graph placed per node over 2 workers, that was 3 to 4 s of each
// worker's start, both workers compiling at once on a 2-core machine. What compile computes is a
// few typed arrays (placement, stages, the gradient plan's masks and counts, the consumer edges as
// columns) and a few small lists; a worker thread gets them by structured clone beside the packed
// graph (Note [packed graph]) and only checks that they hold together with the graph and with each
// other (lengths, ranges, every consumer edge an input edge of the graph), linear passes over typed
// arrays. Like the graph, they are the coordinator's own, which compile made; a corrupted handoff is a
// FormatError, never a crash or a wrong plan. Node processes, which get their init as bytes, still
// compile from the options.

/** What a host is given of a plan: everything compile made, but the graph and what is derived on first read. */
export type PlanColumns = Omit<PlanParts, 'grad'> & { readonly grad: Omit<GradPlan, 'cells'> };

/** The columns of a plan (shared, not copied: structured clone copies them). */
export function planColumns(plan: Plan): PlanColumns {
  const { grad } = plan;
  return {
    workers: plan.workers,
    replicas: plan.replicas,
    strategy: plan.strategy,
    loss: plan.loss,
    params: plan.params,
    inputGrads: plan.inputGrads,
    grad: {
      loss: grad.loss,
      wrt: grad.wrt,
      forward: grad.forward,
      needsGrad: grad.needsGrad,
      expected: grad.expected,
      disconnected: grad.disconnected,
    },
    placement: plan.placement,
    paramWorkers: plan.paramWorkers,
    consumerEdges: plan.consumerEdges,
    bytes: plan.bytes,
    load: plan.load,
    stages: plan.stages,
    stageOf: plan.stageOf,
    stageWorkers: plan.stageWorkers,
    group: plan.group,
    options: plan.options,
  };
}

/** The plan of `graph` from its columns (Note [shipped plan]); a FormatError if they do not hold together. */
export function planFromColumns(graph: Graph, c: PlanColumns): Plan {
  const n = graph.size;
  const count = (v: unknown, what: string) => {
    if (!Number.isInteger(v) || (v as number) < 1) throw corrupt(`${what} >= 1, found ${String(v)}`);
    return v as number;
  };
  const workers = count(c?.workers, 'workers');
  const replicas = count(c.replicas, 'replicas');
  const stages = count(c.stages, 'stages');
  const group = count(c.group, 'group');
  if (!PLACEMENT_STRATEGIES.includes(c.strategy)) throw corrupt(`a placement strategy, found ${c.strategy}`);
  const column = <A extends ArrayBufferView>(
    v: unknown,
    kind: new (n: number) => A,
    length: number,
    what: string,
  ) => {
    if (!(v instanceof kind) || (v as unknown as { length: number }).length !== length)
      throw corrupt(`${what}: a ${kind.name} of ${length}`);
    return v as A;
  };
  const within = (a: ArrayLike<number>, lo: number, hi: number, what: string) => {
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      if (!(x >= lo && x < hi) || !Number.isInteger(x))
        throw corrupt(`${what}: values in [${lo}, ${hi}), found ${x}`);
    }
  };
  const ids = (v: unknown, what: string): readonly number[] => {
    if (!Array.isArray(v)) throw corrupt(`${what}: a list of node ids`);
    within(v, 0, n, what);
    return v;
  };
  if (!Array.isArray(c.placement) || c.placement.length !== replicas) throw corrupt(`${replicas} placements`);
  for (const p of c.placement) within(column(p, Int32Array, n, 'placement'), -1, workers, 'placement');
  within(column(c.stageOf, Int32Array, n, 'stageOf'), -1, stages, 'stageOf');
  if (!Array.isArray(c.stageWorkers) || c.stageWorkers.length !== stages)
    throw corrupt(`${stages} stage workers`);
  within(c.stageWorkers, 0, group, 'stageWorkers');
  const g = c.grad;
  within(column(g?.forward, Uint8Array, n, 'forward'), 0, 2, 'forward');
  within(column(g.needsGrad, Uint8Array, n, 'needsGrad'), 0, 2, 'needsGrad');
  within(column(g.expected, Int32Array, n, 'expected'), 0, 2 ** 31, 'expected');
  for (const [what, v] of [
    ['loss', c.loss],
    ['grad.loss', g.loss],
  ] as const)
    if (!Number.isInteger(v) || v < 0 || v >= n) throw corrupt(`${what}: a node id, found ${String(v)}`);
  ids(g.wrt, 'wrt');
  ids(g.disconnected, 'disconnected');
  for (const [what, v, op] of [
    ['params', c.params, 'param'],
    ['inputGrads', c.inputGrads, 'input'],
  ] as const)
    for (const id of ids(v, what))
      if (graph.opOf(id) !== op) throw corrupt(`${what}: ${op} nodes, found %${id}`);
  if (!(c.paramWorkers instanceof Map)) throw corrupt('paramWorkers: a map');
  for (const [id, copies] of c.paramWorkers) {
    ids([id], 'paramWorkers');
    if (!Array.isArray(copies)) throw corrupt('paramWorkers: lists of workers');
    within(copies, 0, workers, 'paramWorkers');
  }
  checkEdges(graph, c);
  column(c.bytes, Float64Array, n, 'bytes');
  if (!Array.isArray(c.load) || c.load.length !== workers) throw corrupt(`a load per worker`);
  if (typeof c.options !== 'object' || c.options === null) throw corrupt('options: plain data');
  return assemblePlan(graph, { ...c, grad: gradPlanOf(graph, g) });
}

/** The consumer edges: in order, each one an input edge of the graph (consumer after producer). */
function checkEdges(graph: Graph, c: PlanColumns): void {
  const n = graph.size;
  const e = c.consumerEdges;
  if (!(e?.start instanceof Int32Array) || e.start.length !== n + 1)
    throw corrupt('consumer edges of every node');
  const { start, node, slot } = e;
  if (!(node instanceof Int32Array) || !(slot instanceof Int32Array) || node.length !== slot.length)
    throw corrupt('consumer edges: columns node and slot of one length');
  if (start[0] !== 0 || start[n] !== node.length)
    throw corrupt('consumer edges: offsets from 0 to their count');
  const { inputStart, inputIds } = graph.columns;
  for (let id = 0; id < n; id++) {
    const e1 = start[id + 1]!;
    if (e1 < start[id]!) throw corrupt(`consumer edges of %${id}: offsets in order`);
    for (let k = start[id]!; k < e1; k++) {
      const to = node[k]!;
      const s = slot[k]!;
      if (
        !(to > id && to < n && s >= 0 && s < inputStart[to + 1]! - inputStart[to]!) ||
        inputIds[inputStart[to]! + s] !== id
      )
        throw corrupt(`consumer edges of %${id}: input edges of the graph, found %${to} slot ${s}`);
    }
  }
}

function corrupt(expected: string): FormatError {
  return new FormatError(`planFromColumns: expected ${expected}`, { phase: 'deserialize', expected });
}
