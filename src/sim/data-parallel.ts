// A data-parallel step on more workers than the machine has: the simulator's projection
// (Note [projected data-parallel step]).
import { InputError } from '../errors.ts';
import type { Graph } from '../graph/graph.ts';
import { compile, type ParamPlacement, type Plan } from '../partition/plan.ts';
import type { CostModel } from './cost.ts';
import { simulate } from './simulate.ts';

// Note [projected data-parallel step]
// A real data-parallel step is the hosts' tasks and messages (what `simulate` runs, with each host's
// real actor logic) plus what the step pays outside them: the coordinator's start, its posts and the
// thread hops to the hosts, each host taking its start, the gaps between a host's tasks (taking
// envelopes, handing values on), the reports' way back and the coordinator's "every report in". The
// simulator does not model the coordinator or a host's time between tasks, so the projection adds a
// per-step `fixedMs` to the simulated makespan:
//   step(N) = makespan(plan of N workers, N replicas, shards of batch / N rows) + fixedMs.
// The task costs come per shard size (`costsAt(rows)`): a matmul of 16 rows is not an eighth of one
// of 128 on a real core, so a calibration measures the costs at each shard size rather than scaling
// one. What crosses between hosts (parameter values from their owners, gradient contributions to
// them) goes through the cost model's links, and the cost model's `send` and `receive` charge the
// owner's core for copying its values for the other replicas and summing their contributions (Note
// [message chores], src/sim/simulate.ts): with sharded parameters one owner holds most of the bytes
// and does both N - 1 times, the part of the step that grows with N. Not modelled: the update itself
// (in the fixed part, as the one-worker step paid it), and any slowdown of one worker's compute when
// others compute at once (memory bandwidth, a shared core). Each worker has a core of its own (the
// `cores` of `simulate` left at one per worker).

/** What `projectDataParallel` needs: the global batch, the costs per shard size, and the fixed part. */
export interface ProjectionOptions {
  /** Data-parallel replicas, one worker each. */
  replicas: number;
  /** The step's batch, every replica's shard together (a multiple of `replicas`). */
  batchSize: number;
  /** The cost model of the tasks and messages of a step whose shards have `rows` rows. */
  costsAt(rows: number): CostModel;
  /** What a step pays outside the hosts' tasks, in the cost model's unit (Note [projected data-parallel step]). */
  fixedMs: number;
  /** Where parameters live (default the runtime's, 'sharded'). */
  paramPlacement?: ParamPlacement;
}

/** One projected data-parallel step: its length, its parts, and the plan it simulated. */
export interface Projection {
  /** Replicas (= workers). */
  replicas: number;
  /** Rows of each replica's shard. */
  shardRows: number;
  /** The simulated hosts' step: tasks and messages. */
  makespan: number;
  /** `makespan + fixedMs`: the projected step. */
  stepMs: number;
  /** Messages between workers in the step. */
  messages: number;
  /** The plan simulated. */
  plan: Plan;
}

/**
 * Simulates one data-parallel step of `graph` on `replicas` workers, one replica each, and adds what
 * a step pays outside the hosts' tasks (Note [projected data-parallel step]).
 */
export function projectDataParallel(graph: Graph, options: ProjectionOptions): Projection {
  const { replicas, batchSize } = options;
  if (!Number.isInteger(batchSize / replicas)) {
    throw new InputError(
      `projectDataParallel: the batch (${batchSize}) is not a multiple of the replicas (${replicas})`,
      { expected: `a multiple of ${replicas}`, found: batchSize },
    );
  }
  const shardRows = batchSize / replicas;
  const plan = compile(graph, {
    workers: replicas,
    replicas,
    ...(options.paramPlacement !== undefined ? { paramPlacement: options.paramPlacement } : {}),
  });
  const r = simulate(plan, { microbatches: 1, batchSize, cost: options.costsAt(shardRows), record: false });
  return {
    replicas,
    shardRows,
    makespan: r.makespan,
    stepMs: r.makespan + options.fixedMs,
    messages: r.messages,
    plan,
  };
}
