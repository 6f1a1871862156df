import { InputError } from '../errors.ts';
import { GraphBuilder } from '../graph/builder.ts';
import type { Graph } from '../graph/graph.ts';
import { compile } from '../partition/plan.ts';
import { hostActions, resolveSchedule, type ScheduleSpec } from '../runtime/pipeline.ts';
import type { StagePlacement } from '../schedule/placement.ts';
import { type CostModel, type LinkCost, stageCosts } from './cost.ts';
import { type SimResult, simulate } from './simulate.ts';

/**
 * The smallest model with `stages` pipeline stages: one node per stage, each with its own parameter
 * (h = h * w_s over f32[B, width]), the loss on the last stage. For what-if runs of schedules.
 */
export function stageChain(stages: number, width = 16): Graph {
  const b = new GraphBuilder();
  let h = b.onStage(0, () => b.input('x', ['B', width]));
  for (let s = 0; s < stages; s++)
    h = b.onStage(s, () => b.mul(h, b.param(`w${s}`, [width], { init: { kind: 'ones' } })));
  b.output(
    'loss',
    b.onStage(stages - 1, () => b.sum(h)),
  );
  return b.build();
}

/**
 * What `simulatePipeline` simulates: a schedule by name or by hand, its size, the model (by default
 * a chain of equal stages) and the costs.
 */
export interface PipelineSimOptions {
  /** A schedule's name, a hand-written schedule, or one with its stage placement. */
  schedule: ScheduleSpec;
  /** Pipeline workers (p). */
  workers: number;
  /** Microbatches per step. */
  microbatches: number;
  /** Model chunks per worker, for interleaved and V schedules. */
  chunks?: number;
  /** Where the stages run (Note [stage placement]); default: the schedule's own, else 'loop'. */
  stagePlacement?: StagePlacement;
  /** The model (default: stageChain of the schedule's stages, with manual stage annotations). */
  graph?: Graph;
  /**
   * For the default model: the bytes of one microbatch's activation crossing a stage boundary (and of
   * its gradient coming back), rounded up to whole float32 (default 64).
   */
  activationBytes?: number;
  /** The batch size of the step (default: one row per microbatch). */
  batchSize?: number;
  /** Per-stage costs (the closed forms' setting) and the wire between workers, unless a cost model is given. */
  costs?: {
    /** A stage's forward. */
    forward: number;
    /** A stage's full backward. */
    backward: number;
    /** The input-gradient half of a split backward (ZB-H1). */
    input?: number;
    /** The weight-gradient half of a split backward (ZB-H1). */
    weight?: number;
  } & LinkCost;
  /** A cost model of its own, instead of `costs`. */
  cost?: CostModel;
  /** Cores the workers share (default: one per worker). */
  cores?: number;
  /** Record one span per task (default true; false keeps memory flat for huge runs). */
  record?: boolean;
}

/** Simulates one step of a pipeline schedule with the runtime's own host logic. */
export function simulatePipeline(options: PipelineSimOptions): SimResult & {
  /** The pipeline's stages. */
  stages: number;
} {
  const { schedule, stageWorkers } = resolveSchedule(options.schedule, {
    workers: options.workers,
    microbatches: options.microbatches,
    chunks: options.chunks,
    stagePlacement: options.stagePlacement,
  });
  const stages = stageWorkers.length;
  // stageChain's activations are f32[B, width], and a microbatch is one row unless batchSize says else.
  const width = Math.max(1, Math.ceil((options.activationBytes ?? 64) / 4));
  if (options.graph !== undefined && options.activationBytes !== undefined)
    throw new InputError(
      'simulatePipeline: activationBytes sizes the default model; a given graph has its own',
    );
  const graph = options.graph ?? stageChain(stages, width);
  const plan = compile(graph, {
    workers: options.workers,
    placement: options.graph ? 'stages' : 'manual',
    stages,
    stagePlacement: stageWorkers,
  });
  const cost = options.cost ?? stageCosts(plan, options.costs ?? { forward: 1, backward: 2 });
  const result = simulate(plan, {
    microbatches: options.microbatches,
    batchSize: options.batchSize ?? options.microbatches,
    cost,
    schedule: hostActions(plan, schedule),
    ...(options.cores !== undefined ? { cores: options.cores } : {}),
    ...(options.record !== undefined ? { record: options.record } : {}),
  });
  return { ...result, stages };
}
