// A fuzz case as plain data: the generator builds its graph from it (generate.ts), the harness runs
// it (run-case.ts), the shrinker edits it (shrink.ts), and the regression table stores it.

import type { PlacementStrategy } from '../../src/partition/placement.ts';
import type { ParamPlacement } from '../../src/partition/plan.ts';
import type { ScheduleKind } from '../../src/schedule/config.ts';

/**
 * What the generator may make, each behind its own switch so that a failure can be traced to the
 * features its case needs, and CI can turn on exactly those that pass.
 */
export const FEATURE_DOCS = {
  broadcast: 'rank-1, row, column and scalar operands (params, consts, literals) against [B, n]',
  rank3: 'values of shape [B, a, b]: reshape, batched matmul, transpose and reductions over inner axes',
  batchAxis: 'ops across the batch axis: transpose to [n, B], Gram matrices, softmax and sums over axis 0',
  nonDiff: 'non-differentiable paths: stopGradient, sign, comparisons as masks, oneHot',
  paramFanOut: 'a parameter read by several nodes',
  tiedWeights: 'matmul(x, W) then matmul(h, W^T) with the same W',
  secondInput: 'more inputs: x2 [B, m], a whole input c [n] (not split by the batch), labels y [B]',
  userOps: 'ops registered by defineOp in a fixture module (test/fixtures/fuzz-ops.ts)',
  paramConstOnly:
    'nodes whose inputs are only params and consts: transpose(W), weight decay sum(square(w)), exp(const), dimSize',
  disconnectedParam: 'parameters not connected to the loss: unused, or read only by a dead branch',
  frozenParam: 'parameters left out of wrt',
  wrtInputs: 'inputs in wrt (gradients with respect to x, x2, c)',
  optimizer: 'an optimizer on the workers (sgd or adam): parameters compared after the updates',
  schedules: "pipeline schedules (every one of SCHEDULE_KINDS) with 'stages' or 'manual' placement",
  vStages:
    "stages placed in a V (stagePlacement 'v', 2 chunks per worker): ZB-V, DualPipeV, and a hand-written GPipe-order schedule",
  backStages:
    "'manual' stage annotations that go up and come back down: a schedule must refuse them (checkStageFlow)",
  partialStages: "'manual' placement with some nodes left unannotated (they follow a consumer or an input)",
  scheduleAnyPlacement: "pipeline schedules with 'per-node' and 'min-comm' placement too",
  images:
    'values viewed as NHWC images [B, h, w, c]: conv2d and its gradients, max and average pooling and their adjoints, flattened back',
  masks: "where over comparisons' and constant 0/1 masks, argmax as indices",
  manyMicrobatches:
    'pipeline schedules with up to 8x as many microbatches as workers, not a multiple of them (every kind within its rule)',
  graphFile:
    'the runtime runs the graph read back from its bytes (serializeGraph, deserializeGraph): a graph on the decoded columns, checked on them',
  wide: "on threads, half the cases with a stem 65-96 wide: its [n, n] parameter, the parameter's gradient contributions and copies pass 16 KiB, so between hosts they travel through the links' rings (Note [tensor ring])",
} as const;

export type Feature = keyof typeof FEATURE_DOCS;
export const FEATURES = Object.keys(FEATURE_DOCS) as Feature[];

/** How the runtime runs a case: everything createRuntime is given, as data. */
export interface RunConfig {
  /** 'nats': hosts on node processes the harness started (HarnessOptions.cluster). */
  mode: 'in-process' | 'threads' | 'nats';
  workers: number;
  replicas: number;
  microbatches: number;
  placement: PlacementStrategy;
  paramPlacement: ParamPlacement;
  schedule?: ScheduleKind | 'gpipe-v';
  chunks?: number;
  /** In-process: a seeded random delivery order. */
  shuffleSeed?: number;
  optimizer?: 'sgd' | 'adam';
  /** The runtime runs the graph as deserializeGraph reads back what serializeGraph wrote of it. */
  graphFile?: true;
  /** Rows of every step's batch. */
  batch: number;
  steps: number;
}

/** The simplest run, which shrinking heads for: one step, one replica, one microbatch, one row. */
export const SMALLEST_RUN: RunConfig = {
  mode: 'in-process',
  workers: 1,
  replicas: 1,
  microbatches: 1,
  placement: 'stages',
  paramPlacement: 'sharded',
  batch: 1,
  steps: 1,
};

/** SMALLEST_RUN with some options changed (how regressions.ts writes its runs). */
export const runWith = (changes: Partial<RunConfig>): RunConfig => ({ ...SMALLEST_RUN, ...changes });

/** The options of a run that differ from SMALLEST_RUN. */
export function runChanges(run: RunConfig): Partial<RunConfig> {
  const all = { ...SMALLEST_RUN, ...run } as Record<string, unknown>;
  const base = SMALLEST_RUN as unknown as Record<string, unknown>;
  return Object.fromEntries(Object.entries(all).filter(([k, v]) => v !== undefined && v !== base[k]));
}

export interface FuzzCase {
  /** Every random choice of the graph comes from this seed (one generator per step). */
  seed: number;
  /** Op steps after the stem. */
  size: number;
  /** Steps left out (by the shrinker): the others draw what they drew before. */
  skip: number[];
  /**
   * The steps draw among the first `ops` ops of the generator (generate.ts, OPS), those there were
   * when the case was made: ops added since do not change its graph. Absent: all of them.
   */
  ops?: number;
  /** The width n of the main input x [B, n]. */
  width: number;
  features: Feature[];
  run: RunConfig;
}

/** The runtime options of a case in a short human form. */
export function describeRun(r: RunConfig): string {
  const parts = [
    r.mode,
    `workers ${r.workers}`,
    `replicas ${r.replicas}`,
    `microbatches ${r.microbatches}`,
    r.placement,
    `params ${r.paramPlacement}`,
    r.schedule ? `schedule ${r.schedule}${r.chunks ? ` x${r.chunks}` : ''}` : '',
    r.optimizer ? `optimizer ${r.optimizer}` : '',
    r.graphFile ? 'the graph read from its bytes' : '',
    r.shuffleSeed !== undefined ? `shuffle ${r.shuffleSeed}` : '',
    `batch ${r.batch}`,
    `${r.steps} steps`,
  ];
  return parts.filter(Boolean).join(', ');
}
