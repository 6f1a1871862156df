import type { GradPlan } from '../autodiff/plan.ts';
import { InputError } from '../errors.ts';
import type { Graph, Node } from '../graph/graph.ts';
import type { TypeInfo } from '../ops/op.ts';
import { numel } from '../ops/rules.ts';
import type { Shape } from '../tensor/shape.ts';
import { bytesPerElement } from '../tensor/tensor.ts';
import { sharedColumn } from '../util/shared-memory.ts';

/**
 * - 'per-node': every node its own actor, dealt round-robin over the workers (the most messages);
 * - 'stages': contiguous runs of the topological order, balanced by estimated FLOPs (a pipeline);
 * - 'manual': the stage annotations of the builder (`b.onStage(s, ...)`);
 * - 'min-comm': balanced stages, then nodes moved across worker boundaries while that lowers the
 *   bytes crossing workers and keeps every worker within the imbalance bound.
 */
export type PlacementStrategy = 'per-node' | 'stages' | 'manual' | 'min-comm';
/** Every placement strategy, as `compile` and the command line accept them. */
export const PLACEMENT_STRATEGIES: readonly PlacementStrategy[] = [
  'per-node',
  'stages',
  'manual',
  'min-comm',
];

export interface Placement {
  /** Worker (within one replica's group) of each node; -1 for consts (inlined) and nodes never computed. */
  readonly worker: Int32Array;
  /** Estimated FLOPs of each node. */
  readonly cost: Float64Array;
  /** Bytes of each node's value. */
  readonly bytes: Float64Array;
}

interface PlaceOptions {
  strategy: PlacementStrategy;
  workers: number;
  batchSize: number;
  imbalance: number;
}

/** `shape` with its symbolic dimensions set to `batch`: the shape itself when every dimension is a size. */
function concrete(shape: Shape, batch: number): Shape {
  for (let k = 0; k < shape.length; k++) {
    if (typeof shape[k] !== 'number') return shape.map((d) => (typeof d === 'number' ? d : batch));
  }
  return shape;
}

export function placeNodes(
  graph: Graph,
  grad: GradPlan,
  /** The consumer lists, made on first call: per-node placement never reads them. */
  consumersOf: () => readonly (readonly (readonly [number, number])[])[],
  options: PlaceOptions,
): Placement {
  const n = graph.size;
  const { workers, batchSize } = options;
  const cost = new Float64Array(n);
  // `bytes` and `worker` (the stages) a plan ships to worker threads (Note [columns in shared memory]).
  const bytes = sharedColumn(Float64Array, n);
  // The computed nodes' ids, in order: the per-node strategy needs no node objects, which a graph
  // from a builder would make for this pass alone (Note [builder columns]).
  const ids = new Int32Array(n);
  let count = 0;
  const { shapes } = graph.columns;
  const infoOf = (id: number): TypeInfo => ({
    shape: concrete(shapes[id]!, batchSize),
    dtype: graph.dtypeOf(id),
  });
  const read = graph.reader();
  for (let id = 0; id < n; id++) {
    if (grad.forward[id] === 0) continue;
    const node = read(id);
    const shape = concrete(node.shape, batchSize);
    bytes[id] = numel(shape) * bytesPerElement(node.dtype);
    if (node.op === 'const') continue;
    ids[count++] = id;
    // A leaf has no op, and costs nothing.
    const def = graph.defs[id];
    if (def !== undefined) {
      const flops =
        def.flops?.(node.inputs.map(infoOf), { shape, dtype: node.dtype }, node.attrs) ?? numel(shape);
      // A backward costs about twice the forward where a gradient flows.
      cost[id] = flops * (grad.needsGrad[id] === 1 ? 3 : 1);
    }
  }
  const computed = (): Node[] => Array.from(ids.subarray(0, count), (id) => graph.nodeAt(id));
  const worker = sharedColumn(Int32Array, n).fill(-1);
  switch (options.strategy) {
    case 'per-node':
      for (let k = 0; k < count; k++) worker[ids[k]!] = k % workers;
      break;
    case 'stages': {
      const nodes = computed();
      balancedStages(nodes, cost, workers, worker);
      leavesWithConsumers(graph, nodes, consumersOf(), worker);
      break;
    }
    case 'manual':
      manualStages(graph, computed(), consumersOf(), workers, worker);
      break;
    case 'min-comm': {
      const nodes = computed();
      balancedStages(nodes, cost, workers, worker);
      leavesWithConsumers(graph, nodes, consumersOf(), worker);
      refine(graph, nodes, consumersOf(), cost, bytes, workers, options.imbalance, worker);
      break;
    }
    default:
      throw new InputError(
        `compile: unknown placement '${String(options.strategy)}' (expected one of per-node, stages, manual, min-comm)`,
        {
          expected: ['per-node', 'stages', 'manual', 'min-comm'],
          found: options.strategy,
        },
      );
  }
  // A parameter the loss does not depend on is still held somewhere (its value, its optimizer state
  // and its zero gradient), on the first stage.
  for (const node of graph.params()) {
    if (worker[node.id] !== -1) continue;
    worker[node.id] = 0;
    bytes[node.id] = numel(concrete(node.shape, batchSize)) * bytesPerElement(node.dtype);
  }
  return { worker, cost, bytes };
}

/** Cuts the topological order into `workers` contiguous runs of about equal cost. */
function balancedStages(
  computed: readonly Node[],
  cost: Float64Array,
  workers: number,
  worker: Int32Array,
): void {
  const ops = computed.filter((node) => node.op !== 'input' && node.op !== 'param');
  let total = 0;
  for (const node of ops) total += cost[node.id]!;
  let acc = 0;
  for (const node of ops) {
    // The stage of a node is where the midpoint of its cost falls.
    const mid = acc + cost[node.id]! / 2;
    worker[node.id] = total === 0 ? 0 : Math.min(workers - 1, Math.floor((mid / total) * workers));
    acc += cost[node.id]!;
  }
}

/** Inputs and parameters go where their first consumer is. */
function leavesWithConsumers(
  graph: Graph,
  computed: readonly Node[],
  consumers: readonly (readonly (readonly [number, number])[])[],
  worker: Int32Array,
): void {
  for (const node of computed) {
    if (node.op !== 'input' && node.op !== 'param') continue;
    const first = consumers[node.id]!.find(([c]) => graph.opOf(c) !== 'const');
    worker[node.id] = first === undefined ? 0 : worker[first[0]]!;
  }
}

function manualStages(
  graph: Graph,
  computed: readonly Node[],
  consumers: readonly (readonly (readonly [number, number])[])[],
  workers: number,
  worker: Int32Array,
): void {
  for (const node of computed) {
    if (node.stage === undefined) continue;
    if (node.stage >= workers) {
      throw new InputError(
        `compile: node ${node.name ?? `%${node.id}`} is annotated for stage ${node.stage}, but the plan has ${workers} stages`,
        {
          node: node.name ?? node.id,
          expected: `stage < ${workers}`,
          found: node.stage,
        },
      );
    }
    worker[node.id] = node.stage;
  }
  // Unannotated nodes go with their earliest placed consumer (so that nothing they feed comes before
  // them), else with their latest placed input, else on stage 0; then no later than any of their
  // inputs, so that values flow to the same or a later stage where the annotations allow it (a
  // pipeline schedule refuses a plan where they do not: checkStageFlow).
  const annotated = new Uint8Array(graph.size);
  for (const node of computed) if (worker[node.id] !== -1) annotated[node.id] = 1;
  for (let k = computed.length - 1; k >= 0; k--) {
    const node = computed[k]!;
    if (worker[node.id] !== -1) continue;
    let earliest = -1;
    for (const [id] of consumers[node.id]!) {
      const w = worker[id]!;
      if (w >= 0 && (earliest === -1 || w < earliest)) earliest = w;
    }
    if (earliest !== -1) worker[node.id] = earliest;
  }
  for (const node of computed) {
    if (annotated[node.id] === 1) continue;
    let latest = -1;
    for (const i of node.inputs)
      if (graph.opOf(i) !== 'param' && graph.opOf(i) !== 'const') latest = Math.max(latest, worker[i]!);
    if (worker[node.id] === -1) worker[node.id] = Math.max(latest, 0);
    else if (latest > worker[node.id]!) worker[node.id] = latest;
  }
}

/**
 * Greedy refinement (in the spirit of Kernighan-Lin): move a node to the worker of one of its
 * neighbours when that lowers the bytes crossing workers and keeps that worker's load within
 * (1 + imbalance) of the mean. Passes repeat until nothing moves.
 */
function refine(
  graph: Graph,
  computed: readonly Node[],
  consumers: readonly (readonly (readonly [number, number])[])[],
  cost: Float64Array,
  bytes: Float64Array,
  workers: number,
  imbalance: number,
  worker: Int32Array,
): void {
  if (workers < 2) return;
  const load = new Float64Array(workers);
  let total = 0;
  for (const node of computed) {
    load[worker[node.id]!]! += cost[node.id]!;
    total += cost[node.id]!;
  }
  const limit = (total / workers) * (1 + imbalance);
  // Bytes on the edges between `id` and its neighbours that would cross if `id` sat on worker w.
  const cut = (id: number, w: number): number => {
    let b = 0;
    for (const i of graph.nodeAt(id).inputs) if (worker[i]! >= 0 && worker[i] !== w) b += bytes[i]!;
    const seen = new Set<number>();
    for (const [c] of consumers[id]!) {
      if (worker[c]! >= 0 && worker[c] !== w && !seen.has(worker[c]!)) {
        seen.add(worker[c]!);
        b += bytes[id]!;
      }
    }
    return b;
  };
  for (let pass = 0; pass < 20; pass++) {
    let moved = false;
    for (const node of computed) {
      const id = node.id;
      const here = worker[id]!;
      const candidates = new Set<number>();
      for (const i of node.inputs) if (worker[i]! >= 0) candidates.add(worker[i]!);
      for (const [c] of consumers[id]!) if (worker[c]! >= 0) candidates.add(worker[c]!);
      candidates.delete(here);
      let best = here;
      let bestCut = cut(id, here);
      for (const w of candidates) {
        if (load[w]! + cost[id]! > limit) continue;
        const c = cut(id, w);
        if (c < bestCut) {
          best = w;
          bestCut = c;
        }
      }
      if (best !== here) {
        load[here]! -= cost[id]!;
        load[best]! += cost[id]!;
        worker[id] = best;
        moved = true;
      }
    }
    if (!moved) break;
  }
}
