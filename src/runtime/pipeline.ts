import type { HostAction } from '../actor/task-queue.ts';
import { InputError, ScheduleError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import type { CompileOptions, Plan } from '../partition/plan.ts';
import { actionsOf, isCompute, type Schedule } from '../schedule/action.ts';
import { checkRows } from '../schedule/action-rules.ts';
import { checkPipelineConfig, SCHEDULE_KINDS, type ScheduleKind } from '../schedule/config.ts';
import { generatePlacedSchedule } from '../schedule/generators.ts';
import {
  formatStagePlacement,
  type PlacedSchedule,
  resolveStagePlacement,
  type StagePlacement,
} from '../schedule/placement.ts';
import { validateSchedule } from '../schedule/validate.ts';
import type { RuntimeOptions } from './options.ts';

/**
 * A schedule by name, a hand-written one (one action list per pipeline worker, placed by the
 * `stagePlacement` option, default 'loop'), or a hand-written one with its placement.
 */
export type ScheduleSpec = ScheduleKind | Schedule | PlacedSchedule;

/** A checked schedule and the worker of each of its stages (Note [stage placement]). */
export interface ResolvedSchedule {
  readonly schedule: Schedule;
  readonly stageWorkers: readonly number[];
}

function isScheduleKind(spec: unknown): spec is ScheduleKind {
  return typeof spec === 'string' && (SCHEDULE_KINDS as readonly string[]).includes(spec);
}

/**
 * The runtime's options with their schedule checked (Note: before any worker starts) and the graph's
 * placement set to its stages, or the options as they are without a schedule. Throws ScheduleError.
 */
export function scheduledOptions(options: RuntimeOptions): {
  schedule: ResolvedSchedule | null;
  compileOptions: CompileOptions;
} {
  if (options.schedule === undefined) return { schedule: null, compileOptions: options };
  const replicas = options.replicas ?? 1;
  const group = Math.max(1, Math.floor(options.workers / replicas));
  const schedule = resolveSchedule(options.schedule, {
    workers: group,
    microbatches: options.microbatches ?? 1,
    chunks: options.chunks,
    stagePlacement: options.stagePlacement,
  });
  const placement = options.placement ?? 'stages';
  if (placement !== 'stages' && placement !== 'manual') {
    throw new ScheduleError(
      `a pipeline schedule runs the graph cut into stages: placement must be 'stages' or 'manual', found '${placement}'`,
      { rule: 'placement', expected: ['stages', 'manual'], found: placement },
    );
  }
  const stagePlacement = schedule.stageWorkers;
  const compileOptions = { ...options, placement, stages: stagePlacement.length, stagePlacement };
  return { schedule, compileOptions };
}

/**
 * Checks a schedule against the configuration before anything starts (its rules, then the validator
 * with its stage placement) and returns the pipeline of one replica: the schedule and where its stages
 * run. Stages: workers x chunks (by default the schedule's own: 2 for the V schedules, else 1); for a
 * hand-written schedule without chunks, the length of an array placement, else one per worker. A `stagePlacement` option that resolves differently from the
 * schedule's own placement (a generator's, or a PlacedSchedule's) is refused. Throws ScheduleError.
 */
export function resolveSchedule(
  spec: ScheduleSpec,
  config: {
    workers: number;
    microbatches: number;
    chunks?: number | undefined;
    stagePlacement?: StagePlacement | undefined;
  },
): ResolvedSchedule {
  const { workers, microbatches } = config;
  let placed: PlacedSchedule;
  let stages: number;
  if (typeof spec === 'string') {
    if (!isScheduleKind(spec)) {
      throw new InputError(`unknown schedule '${spec}' (expected one of ${SCHEDULE_KINDS.join(', ')})`, {
        expected: SCHEDULE_KINDS,
        found: spec,
      });
    }
    // Without chunks, the schedule's own default: 1, or 2 for the V schedules.
    const checked = checkPipelineConfig(spec, {
      workers,
      microbatches,
      ...(config.chunks !== undefined ? { chunks: config.chunks } : {}),
    });
    placed = generatePlacedSchedule(spec, checked);
    stages = checked.stages;
  } else {
    placed =
      'stagePlacement' in spec ? spec : { schedule: spec, stagePlacement: config.stagePlacement ?? 'loop' };
    const own = placed.stagePlacement;
    stages =
      config.chunks !== undefined ? workers * config.chunks : typeof own === 'object' ? own.length : workers;
  }
  const stageWorkers = resolveStagePlacement(placed.stagePlacement, stages, workers);
  if (config.stagePlacement !== undefined) {
    const asked = resolveStagePlacement(config.stagePlacement, stages, workers);
    if (asked.some((w, s) => w !== stageWorkers[s]))
      throw new ScheduleError(
        `the schedule ${typeof spec === 'string' ? `'${spec}' ` : ''}places its stages by ` +
          `${formatStagePlacement(placed.stagePlacement)} ([${stageWorkers.join(', ')}]), but the option ` +
          `stagePlacement is ${formatStagePlacement(config.stagePlacement)} ([${asked.join(', ')}])`,
        { rule: 'stage placement', expected: stageWorkers, found: asked },
      );
  }
  if (typeof spec !== 'string')
    validateSchedule(placed.schedule, { stages, microbatches, stagePlacement: placed.stagePlacement });
  return { schedule: placed.schedule, stageWorkers };
}

/**
 * Each worker's compute actions: worker w runs row (w mod workers-per-replica) of the schedule for its
 * replica. Sends and receives are left out: in the runtime, messages leave when their values are made.
 * Checks first that the schedule's rows agree with the plan's stage placement (Note [stage placement]),
 * so that a schedule written for another placement is refused before any worker starts.
 */
export function hostActions(plan: Plan, schedule: Schedule): HostAction[][] {
  if (schedule.length !== plan.group) {
    throw new InputError(
      `the schedule has ${schedule.length} rows, but a replica has ${plan.group} workers`,
      {
        expected: plan.group,
        found: schedule.length,
      },
    );
  }
  checkRows(schedule, plan.stageWorkers, 'the plan');
  checkStageFlow(plan);
  // An overlapped pair runs as its two halves, back to back (Note [overlapped F and B]).
  return Array.from({ length: plan.workers }, (_, w) =>
    (schedule[w % plan.group] ?? [])
      .flatMap(actionsOf)
      .filter(isCompute)
      .map((a) => ({ kind: a.kind as HostAction['kind'], stage: a.stage, mb: a.microbatch })),
  );
}

/**
 * A schedule runs a stage's actions in a fixed order, so a value may only flow to its own stage or a
 * later one: an edge back to an earlier stage waits for an action the schedule runs later, and the
 * step would hang. 'stages' never makes one; 'manual' does where the annotations come back down (an
 * unannotated node goes no earlier than its inputs: placement.ts). Refused before any worker starts,
 * naming the first such edge.
 */
export function checkStageFlow(plan: Plan): void {
  const { graph, stageOf } = plan;
  for (const node of graph.nodes) {
    const to = stageOf[node.id]!;
    if (to < 0) continue;
    for (const input of node.inputs) {
      const producer = graph.nodeAt(input);
      // Parameters and constants are handed out when the step starts, not by a stage's action.
      if (producer.op === 'param' || producer.op === 'const') continue;
      const from = stageOf[input]!;
      if (from > to) {
        throw new ScheduleError(
          `a pipeline schedule needs every value to flow to its own stage or a later one, but ` +
            `${label(producer)} (stage ${from}) feeds ${label(node)} (stage ${to}) with placement ` +
            `'${plan.strategy}'; use placement 'stages', or annotate the stages (placement 'manual') so ` +
            `that they only go up`,
          { rule: 'stage flow', node: label(node), expected: `stage >= ${from}`, found: to },
        );
      }
    }
  }
}
