import { edgeFacts, type GradPlan, planGradient } from '../autodiff/plan.ts';
import { InputError } from '../errors.ts';
import { PARAM } from '../graph/columns.ts';
import { type Graph, label, type NodeRef } from '../graph/graph.ts';
import { resolveStagePlacement, type StagePlacement } from '../schedule/placement.ts';
import { sharedColumn } from '../util/shared-memory.ts';
import { type PlacementStrategy, placeNodes } from './placement.ts';

/**
 * What `compile` (and the runtime, which compiles the same way) is told: workers, replicas, the
 * placement strategy and its parameters.
 */
export interface CompileOptions {
  /** How many workers (threads) the plan spreads over. */
  workers: number;
  /** Default 'stages'. */
  placement?: PlacementStrategy;
  /** Data-parallel replicas of the graph (default 1). Each replica gets workers / replicas workers. */
  replicas?: number;
  /** The loss (default: the output named 'loss'). */
  loss?: NodeRef;
  /**
   * What gets a gradient (default: every parameter): parameters, and inputs (Note [input gradients]
   * in src/autodiff/microbatch.ts). Anything else is refused.
   */
  wrt?: readonly NodeRef[];
  /** The batch size cost estimates assume for symbolic dimensions (default 32). */
  batchSize?: number;
  /** Allowed load imbalance of 'min-comm' over the balanced stages, as a fraction (default 0.1). */
  imbalance?: number;
  /**
   * Pipeline stages per replica for 'stages' and 'manual' placement (default: one per worker, or the
   * length of an array `stagePlacement`). Stage s runs on the worker `stagePlacement` gives it.
   */
  stages?: number;
  /**
   * Which worker of a replica runs each stage (Note [stage placement]): 'loop' (default, stage s on
   * worker s mod workers per replica, interleaved schedules' placement), 'v', or an array
   * `stageWorkers[s] = worker`. Every node of stage s goes there, parameters included.
   */
  stagePlacement?: StagePlacement;
  /**
   * Where parameters live when there are replicas (Note [parameter placement]):
   * - 'sharded' (default): once, owners spread over the replicas by bytes (optimizer state and
   *   gradient sums split, like ZeRO), each value sent to the other replicas every step;
   * - 'replicated': a copy in every replica, as PyTorch's DistributedDataParallel keeps them; every
   *   copy gets every replica's gradient contributions and applies the same update;
   * - 'replica-0': once, on replica 0's workers.
   */
  paramPlacement?: ParamPlacement;
}

/**
 * Where parameters live when there are replicas: 'sharded' (default), 'replicated' or 'replica-0'
 * (see `CompileOptions.paramPlacement`).
 */
export type ParamPlacement = 'replicated' | 'sharded' | 'replica-0';

/**
 * The options a plan was compiled with, resolved: every default filled in, the loss and `wrt` as node
 * ids. Plain data (a worker gets it by structured clone or as msgpack), and complete: compile is pure,
 * so `compile(plan.graph, plan.options)` rebuilds the same plan, which is how every host gets its own.
 */
export interface PlanOptions {
  /** Workers in all. */
  readonly workers: number;
  /** Data-parallel replicas. */
  readonly replicas: number;
  /** The placement strategy. */
  readonly placement: PlacementStrategy;
  /** Pipeline stages per replica. */
  readonly stages: number;
  /** The resolved stage placement (Note [stage placement]): stageWorkers. */
  readonly stagePlacement: readonly number[];
  /** Where parameters live when there are replicas. */
  readonly paramPlacement: ParamPlacement;
  /** The loss node's id. */
  readonly loss: number;
  /** The ids of what gets a gradient. */
  readonly wrt: readonly number[];
  /** The batch size cost estimates assumed. */
  readonly batchSize: number;
  /** The load imbalance 'min-comm' allowed. */
  readonly imbalance: number;
}
export const PARAM_PLACEMENTS: readonly ParamPlacement[] = ['sharded', 'replicated', 'replica-0'];

/**
 * Every computed node's consumer edges as columns: node id's are `node[e]`, `slot[e]` for e from
 * `start[id]` to `start[id + 1] - 1`, by consumer id then slot.
 */
export interface ConsumerEdges {
  readonly start: Int32Array;
  readonly node: Int32Array;
  readonly slot: Int32Array;
}

/** One gradient-carrying or activation-carrying edge between two workers. */
export interface CrossEdge {
  /** The replica. */
  readonly replica: number;
  /** The producing node. */
  readonly from: number;
  /** The consuming node. */
  readonly to: number;
  /** The consumer's input slot. */
  readonly slot: number;
  /** The producer's worker. */
  readonly fromWorker: number;
  /** The consumer's worker. */
  readonly toWorker: number;
  /** Bytes one activation on this edge carries, symbolic dimensions at the estimate batch size. */
  readonly bytes: number;
}

/**
 * A compiled plan: pure data, printable, testable without threads. Everything a host needs to run its
 * part of a step: where every node of every replica lives, who consumes what, and how many gradient
 * contributions each node waits for before its VJP may run (Note [reverse order by counting]).
 */
export interface Plan {
  /** The graph it places. */
  readonly graph: Graph;
  /** Workers in all, over every replica. */
  readonly workers: number;
  /** Data-parallel replicas, each of `group` workers. */
  readonly replicas: number;
  /** How nodes were placed. */
  readonly strategy: PlacementStrategy;
  /** The loss node's id. */
  readonly loss: number;
  /** The parameters that get a gradient. */
  readonly params: readonly number[];
  /** The inputs that get a gradient (Note [input gradients] in src/autodiff/microbatch.ts). */
  readonly inputGrads: readonly number[];
  /**
   * Which nodes compute, which need a gradient, and how many contributions each is owed (Note
   * [reverse order by counting]).
   */
  readonly grad: GradPlan;
  /** placement[r][id]: the worker of node id in replica r; -1 for nodes the step never computes and for consts. Params: their owner. */
  readonly placement: readonly Int32Array[];
  /**
   * The workers holding a copy of each parameter (Note [parameter placement]): one worker when it is
   * placed once, one per replica's worker when it is replicated; the first is replica 0's, whose
   * copy reports. None for a parameter the step never computes.
   */
  readonly paramWorkers: ReadonlyMap<number, readonly number[]>;
  /** consumers[id]: the (consumer, slot) edges reading node id, among computed nodes, by consumer then slot (made on first read from `consumerEdges`). */
  readonly consumers: readonly (readonly (readonly [number, number])[])[];
  /** The same edges as columns (Note [graph columns]): what hosts read on their hot paths. */
  readonly consumerEdges: ConsumerEdges;
  /** Bytes of each node's value at the estimate batch size. */
  readonly bytes: Float64Array;
  /** The edges whose values or gradients travel between workers (computed on first read). */
  readonly crossEdges: readonly CrossEdge[];
  /** Estimated FLOPs per worker for one step at the estimate batch size. */
  readonly load: readonly number[];
  /** Pipeline stages per replica, and the stage of every node (-1 where it has none). */
  readonly stages: number;
  /** stageOf[id]: the pipeline stage of node id (-1 where it has none). */
  readonly stageOf: Int32Array;
  /**
   * stageWorkers[s]: the worker within a replica of stage s (Note [stage placement]); replica r's
   * copy is on worker r * group + stageWorkers[s].
   */
  readonly stageWorkers: readonly number[];
  /** Workers per replica. */
  readonly group: number;
  /** What compile read, resolved: `compile(graph, options)` makes this plan again. */
  readonly options: PlanOptions;
}

// Note [reverse order by counting]
// A node's VJP may run for a microbatch only when every gradient contribution it is owed has
// arrived: one per edge to a consumer that needs a gradient (plan.grad.expected[id]). That count, not
// timing, enforces the reverse topological order of the textbook algorithm across workers.

/**
 * Places a graph on workers and replicas and counts the gradient contributions every node waits
 * for: pure and deterministic, so every worker compiles the same plan from the same options. Throws
 * InputError or GraphError on options or graphs it cannot place.
 */
export function compile(graph: Graph, options: CompileOptions): Plan {
  const workers = options.workers;
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(workers) || workers < 1) {
    throw new InputError(`compile: expected workers >= 1, found ${workers}`, {
      expected: '>= 1',
      found: workers,
    });
  }
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new InputError(`compile: expected replicas >= 1, found ${replicas}`, {
      expected: '>= 1',
      found: replicas,
    });
  }
  const lossRef = options.loss ?? 'loss';
  const loss = graph.node(lossRef);
  if (loss.shape.length !== 0) {
    throw new InputError(
      `compile: the loss ${loss.name ?? `%${loss.id}`} must be a scalar, found shape [${loss.shape.join(',')}]`,
      {
        node: loss.name ?? loss.id,
        expected: [],
        found: loss.shape,
      },
    );
  }
  const wrt = options.wrt ?? graph.params();
  for (const ref of wrt) {
    const node = graph.node(ref);
    if (node.op !== 'param' && node.op !== 'input') {
      throw new InputError(
        `compile: wrt names ${label(node)}, a ${node.op} node; expected a parameter or an input`,
        { node: label(node), expected: ['param', 'input'], found: node.op },
      );
    }
  }
  const grad = planGradient(graph, loss.id, wrt);
  const consumerEdges = consumerColumns(graph, grad.forward);
  let consumers: [number, number][][] | null = null;
  const consumersOf = () => (consumers ??= consumerLists(graph.size, consumerEdges));
  const strategy = options.placement ?? 'stages';
  const group = Math.max(1, Math.floor(workers / replicas));
  const stagePlacement = options.stagePlacement ?? 'loop';
  const pipeline = strategy === 'stages' || strategy === 'manual';
  const stages = pipeline
    ? (options.stages ?? (typeof stagePlacement === 'string' ? group : stagePlacement.length))
    : group;
  if (!Number.isInteger(stages) || stages < 1) {
    throw new InputError(`compile: expected stages >= 1, found ${stages}`, {
      expected: '>= 1',
      found: stages,
    });
  }
  // Other strategies place nodes on workers directly: their "stage" is the worker.
  const stageWorkers = pipeline
    ? resolveStagePlacement(stagePlacement, stages, group)
    : Array.from({ length: group }, (_, w) => w);
  const batchSize = options.batchSize ?? 32;
  const imbalance = options.imbalance ?? 0.1;
  const base = placeNodes(graph, grad, consumersOf, { strategy, workers: stages, batchSize, imbalance });
  const paramPlacement = options.paramPlacement ?? 'sharded';
  if (!PARAM_PLACEMENTS.includes(paramPlacement)) {
    throw new InputError(
      `compile: paramPlacement must be one of ${PARAM_PLACEMENTS.join(', ')}, found ${JSON.stringify(paramPlacement)}`,
      { expected: PARAM_PLACEMENTS, found: paramPlacement },
    );
  }
  const owner =
    paramPlacement === 'replicated'
      ? null
      : ownerReplicas(
          graph,
          base.worker,
          stageWorkers,
          base.bytes,
          paramPlacement === 'sharded' ? replicas : 1,
        );
  const placement: Int32Array[] = [];
  const kinds = graph.columns.kinds;
  for (let r = 0; r < replicas; r++) {
    // Shipped to worker threads, as the consumer edges are (Note [columns in shared memory]).
    const p = sharedColumn(Int32Array, graph.size).fill(-1);
    for (let id = 0; id < graph.size; id++) {
      const stage = base.worker[id]!;
      if (stage < 0) continue;
      const v = stageWorkers[stage]!;
      // A parameter placed once sits on its owner's worker for its stage in every replica;
      // everything else (replicated parameters too) is copied per replica.
      const at = owner !== null && kinds[id] === PARAM ? owner[id]! : r;
      p[id] = (at * group + v) % workers;
    }
    placement.push(p);
  }
  const paramWorkers = new Map<number, readonly number[]>();
  for (const node of graph.params()) {
    const copies = new Set<number>();
    for (const p of placement) if (p[node.id]! >= 0) copies.add(p[node.id]!);
    paramWorkers.set(node.id, [...copies]);
  }
  const load = new Array<number>(workers).fill(0);
  for (let r = 0; r < replicas; r++) {
    for (let id = 0; id < graph.size; id++) {
      const w = placement[r]![id]!;
      if (w >= 0 && (r === 0 || kinds[id] !== PARAM)) load[w]! += base.cost[id]!;
    }
  }
  const parts: PlanParts = {
    workers,
    replicas,
    strategy,
    loss: loss.id,
    params: grad.wrt.filter((id) => graph.opOf(id) === 'param'),
    inputGrads: grad.wrt.filter((id) => graph.opOf(id) === 'input'),
    grad,
    placement,
    paramWorkers,
    consumerEdges,
    bytes: base.bytes,
    load,
    stages,
    stageOf: base.worker,
    stageWorkers,
    group,
    options: {
      workers,
      replicas,
      placement: strategy,
      stages,
      stagePlacement: stageWorkers,
      paramPlacement,
      loss: loss.id,
      wrt: grad.wrt,
      batchSize,
      imbalance,
    },
  };
  return assemblePlan(graph, parts, consumers);
}

/** What a plan is made of: everything but its graph and what is derived on first read. */
export type PlanParts = Omit<Plan, 'graph' | 'consumers' | 'crossEdges'>;

/**
 * A plan from its parts (compile's, or a coordinator's shipped to a host as columns: plan-columns.ts),
 * with the consumer lists and the cross-worker edges made on first read: the coordinator reads them,
 * hosts never do, and on a million-node graph placed per node they are millions of objects.
 */
export function assemblePlan(
  graph: Graph,
  parts: PlanParts,
  lists: [number, number][][] | null = null,
): Plan {
  let consumers = lists;
  let crossEdges: CrossEdge[] | null = null;
  const { replicas, placement, consumerEdges, bytes } = parts;
  const makeCrossEdges = (): CrossEdge[] => {
    const edges: CrossEdge[] = [];
    const { start, node, slot } = consumerEdges;
    for (let r = 0; r < replicas; r++) {
      const p = placement[r]!;
      for (let id = 0; id < graph.size; id++) {
        for (let e = start[id]!; e < start[id + 1]!; e++) {
          const c = node[e]!;
          if (p[id]! >= 0 && p[id] !== p[c]) {
            edges.push({
              replica: r,
              from: id,
              to: c,
              slot: slot[e]!,
              fromWorker: p[id]!,
              toWorker: p[c]!,
              bytes: bytes[id]!,
            });
          }
        }
      }
    }
    return edges;
  };
  return {
    graph,
    ...parts,
    get consumers() {
      consumers ??= consumerLists(graph.size, consumerEdges);
      return consumers;
    },
    get crossEdges() {
      crossEdges ??= makeCrossEdges();
      return crossEdges;
    },
  };
}

/** For each computed node, the (consumer, slot) edges that read it, by consumer id then slot, as columns. */
function consumerColumns(graph: Graph, forward: Uint8Array): ConsumerEdges {
  const n = graph.size;
  const { inputStart, inputIds } = graph.columns;
  const start = sharedColumn(Int32Array, n + 1);
  for (let c = 0; c < n; c++) {
    if (forward[c] === 0) continue;
    for (let e = inputStart[c]!; e < inputStart[c + 1]!; e++) start[inputIds[e]! + 1]!++;
  }
  for (let id = 0; id < n; id++) start[id + 1]! += start[id]!;
  const fill = start.slice(0, n);
  const node = sharedColumn(Int32Array, start[n]!);
  const slot = sharedColumn(Int32Array, start[n]!);
  // Consumers by increasing id, each one's slots in order: every list comes out sorted.
  for (let c = 0; c < n; c++) {
    if (forward[c] === 0) continue;
    const base = inputStart[c]!;
    for (let e = base; e < inputStart[c + 1]!; e++) {
      const at = fill[inputIds[e]!]!++;
      node[at] = c;
      slot[at] = e - base;
    }
  }
  return { start, node, slot };
}

/** The consumer edges as one list of (consumer, slot) pairs per node. */
export function consumerLists(n: number, edges: ConsumerEdges): [number, number][][] {
  const { start, node, slot } = edges;
  const lists = new Array<[number, number][]>(n);
  for (let id = 0; id < n; id++) {
    const list: [number, number][] = [];
    for (let e = start[id]!; e < start[id + 1]!; e++) list.push([node[e]!, slot[e]!]);
    lists[id] = list;
  }
  return lists;
}

/** How many gradient contributions travel on the edge (consumer, slot) per microbatch: 1 or 0. */
export function edgeGradient(plan: Plan, consumer: number, slot: number): boolean {
  return edgeGradients(plan)(consumer, slot);
}

/**
 * `edgeGradient` of one plan, its columns looked up once: for a pass over every edge of a large
 * graph (the memory estimate), where a lookup per edge costs as much as the rest of the pass.
 */
export function edgeGradients(plan: Plan): (consumer: number, slot: number) => boolean {
  const { inputStart, inputIds } = plan.graph.columns;
  const { needsGrad } = plan.grad;
  // Note [edge facts]: whether the op lets a gradient through, without its definition.
  const { carries } = edgeFacts(plan.graph);
  return (consumer, slot) => {
    const edge = inputStart[consumer]! + slot;
    return needsGrad[consumer] === 1 && needsGrad[inputIds[edge]!] === 1 && carries[edge] === 1;
  };
}

// Note [parameter placement]
// A parameter's actor sums the gradient contributions of every replica (in the order of Note
// [gradient sum order], wherever it lives), runs the optimizer, and hands the value to its consumers.
// Placed once ('replica-0', 'sharded'), it lives in the replica that owns it (placement[r][id] is
// that worker in every replica) and sends its new value to the other replicas' workers each step.
// Replicated, every replica's worker for its stage holds a copy (placement[r][id] is replica r's
// worker), contributions go to every copy, and every copy applies the same update to the same
// gradient in the same order, so the copies stay bitwise equal; the copy of replica 0 reports.
// `plan.paramWorkers` lists a parameter's copies.
//
// With every parameter owned by replica 0, its workers did all the summing, all the updates and all
// the sends while the others waited. Spreading the owners over the replicas ('sharded': ZeRO's
// sharding of optimizer state and gradients, with the parameters still broadcast) splits that work.
// Within each worker of a replica, parameters go, largest first (then by id), to the replica owning
// the fewest bytes so far (ties to the lowest). compile is pure, so every worker derives the same
// owners. Sharded is the default: an MLP 784-512-512-512-10 on 2 workers stepped up to 1.18x faster
// than with every owner on replica 0, and no model measured was faster replicated, where every copy
// waits for the other replica's last gradient (figures: docs/measurements.md). Replicated stays, as
// what a user of PyTorch's DistributedDataParallel expects.

/** The replica owning each parameter (Note [parameter placement]); 0 for every other node. */
function ownerReplicas(
  graph: Graph,
  stageOf: Int32Array,
  stageWorkers: readonly number[],
  bytes: Float64Array,
  replicas: number,
): Int32Array {
  const owner = new Int32Array(graph.size);
  if (replicas === 1) return owner;
  const params = graph.nodes
    .filter((n) => n.op === 'param' && stageOf[n.id]! >= 0)
    .map((n) => n.id)
    .sort((a, b) => bytes[b]! - bytes[a]! || a - b);
  const load = new Map<number, number[]>();
  for (const id of params) {
    const v = stageWorkers[stageOf[id]!]!;
    let owned = load.get(v);
    if (owned === undefined) load.set(v, (owned = new Array<number>(replicas).fill(0)));
    let best = 0;
    for (let r = 1; r < replicas; r++) if (owned[r]! < owned[best]!) best = r;
    owner[id] = best;
    owned[best]! += bytes[id]!;
  }
  return owner;
}

const NO_WORKERS: readonly number[] = [];

/** The workers holding a copy of parameter `id` (`plan.paramWorkers`); none for any other node. */
export function paramWorkers(plan: Plan, id: number): readonly number[] {
  return plan.paramWorkers.get(id) ?? NO_WORKERS;
}
