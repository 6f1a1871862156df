import type { HostAction } from '../actor/task-queue.ts';
import { InputError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import { isCompute, type Schedule } from '../schedule/action.ts';
import { checkPipelineConfig, SCHEDULE_KINDS, type ScheduleKind } from '../schedule/config.ts';
import { generateSchedule } from '../schedule/generators.ts';
import { validateSchedule } from '../schedule/validate.ts';

/** A schedule by name, or a hand-written one (one action list per pipeline worker). */
export type ScheduleSpec = ScheduleKind | Schedule;

function isScheduleKind(spec: unknown): spec is ScheduleKind {
  return typeof spec === 'string' && (SCHEDULE_KINDS as readonly string[]).includes(spec);
}

/**
 * Checks a schedule against the configuration before anything starts (its rules, then the validator)
 * and returns the pipeline of one replica: the schedule itself. Throws ScheduleError.
 */
export function resolveSchedule(
  spec: ScheduleSpec,
  config: { workers: number; microbatches: number; chunks: number },
): Schedule {
  if (typeof spec === 'string') {
    if (!isScheduleKind(spec)) {
      throw new InputError(`unknown schedule '${spec}' (expected one of ${SCHEDULE_KINDS.join(', ')})`, {
        expected: SCHEDULE_KINDS,
        found: spec,
      });
    }
    checkPipelineConfig(spec, config);
    return generateSchedule(spec, config);
  }
  validateSchedule(spec, { stages: config.workers * config.chunks, microbatches: config.microbatches });
  return spec;
}

/**
 * Each worker's compute actions: worker w runs row (w mod workers-per-replica) of the schedule for its
 * replica. Sends and receives are left out: in the runtime, messages leave when their values are made.
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
  return Array.from({ length: plan.workers }, (_, w) =>
    (schedule[w % plan.group] ?? [])
      .filter((a): a is NonNullable<typeof a> => a !== null && isCompute(a))
      .map((a) => ({ kind: a.kind as HostAction['kind'], stage: a.stage, mb: a.microbatch })),
  );
}
