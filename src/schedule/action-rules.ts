import { ScheduleError } from '../errors.ts';
import { type Action, actionsOf, formatAction, isCompute, malformedReason, type Schedule } from './action.ts';
import { formatGridAround, type GridMark } from './grid.ts';
import { formatStagePlacement, namePlacement, type ShapeOptions, scheduleShape } from './placement.ts';

/**
 * The validator's rules about each action on its own, checked before the rules between actions
 * (validate.ts): it is well-formed (rule "action"), some row computes ("not empty"), its stage and
 * microbatch are in range ("action"), and it sits in the row its stage placement gives its stage
 * ("placement", Note [stage placement]). Also the problem list they all fill and its error.
 */
export interface ScheduleProblem {
  readonly rule: string;
  readonly message: string;
  /** The cells to mark in the grid. */
  readonly marks: readonly GridMark[];
}

/** Stop collecting after this many problems: a badly broken large schedule has thousands. */
const MAX_PROBLEMS = 20;

export class Problems {
  readonly list: ScheduleProblem[] = [];
  add(rule: string, message: string, marks: readonly GridMark[] = []): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push({ rule, message, marks });
  }
  any(): boolean {
    return this.list.length > 0;
  }
}

/** Throws the first problem as a ScheduleError, with the grid around its cells marked. */
export function throwProblems(schedule: Schedule, problems: readonly ScheduleProblem[]): never {
  const first = problems[0]!;
  const more = problems.length > 1 ? `\n(and ${problems.length - 1} more problem(s), first shown)` : '';
  const mark = first.marks[0];
  throw new ScheduleError(
    `invalid schedule, rule "${first.rule}": ${first.message}\n\n${formatGridAround(schedule, first.marks)}${more}`,
    {
      rule: first.rule,
      ...(mark ? { worker: mark.worker, step: mark.step } : {}),
      problems: problems.map((p) => `${p.rule}: ${p.message}`),
    },
  );
}

/**
 * Checks a schedule's rows against a stage placement already resolved, e.g. a plan's (Note [stage
 * placement]): every action of stage s sits in row stageWorkers[s]. `source` names the placement in
 * the error, such as 'the plan'. Throws a ScheduleError showing the grid.
 */
export function checkRows(schedule: Schedule, stageWorkers: readonly number[], source: string): void {
  const problems = new Problems();
  checkRowsInto(schedule, stageWorkers, source, problems);
  if (problems.any()) throwProblems(schedule, problems.list);
}

/** Every action of stage s in row stageWorkers[s]: one problem per misplaced stage. */
export function checkRowsInto(
  schedule: Schedule,
  stageWorkers: readonly number[],
  source: string,
  problems: Problems,
): void {
  const stages = stageWorkers.length;
  const reported = new Set<number>();
  let hint: string | undefined;
  forEachAction(schedule, (a, w, step) => {
    const owner = stageWorkers[a.stage];
    if (owner === w || reported.has(a.stage)) return;
    reported.add(a.stage);
    const at = [{ worker: w, step }];
    if (owner === undefined)
      problems.add(
        'action',
        outOfRange(a, w, step, 'stage', a.stage, stages, `${source} has ${stages} stages`),
        at,
      );
    else
      problems.add(
        'placement',
        `action ${formatAction(a)} is in row ${w} (step ${step}), but ${source} puts stage ${a.stage} on worker ` +
          `${owner}${(hint ??= rowsHint(schedule))}`,
        at,
      );
  });
}

export function checkForm(schedule: Schedule, problems: Problems): void {
  for (const [w, list] of schedule.entries())
    for (const [step, slot] of list.entries()) {
      const why = malformedReason(slot);
      if (why) problems.add('action', `worker ${w}, step ${step}: ${why}`, [{ worker: w, step }]);
    }
}

export function checkNotEmpty(schedule: Schedule, problems: Problems): void {
  for (const list of schedule) for (const slot of list) if (actionsOf(slot).some(isCompute)) return;
  problems.add(
    'not empty',
    schedule.length === 0
      ? 'the schedule has no rows, so a step would compute nothing'
      : `none of its ${schedule.length} row(s) has a compute action (F, B, I or W), so a step would compute nothing`,
  );
}

/** Stages and microbatches in range: the given sizes, or the indices used up to the first gap. */
export function checkSizes(schedule: Schedule, options: ShapeOptions, problems: Problems): void {
  const placement = options.stagePlacement;
  const stages =
    options.stages !== undefined
      ? { size: options.stages, why: `stages = ${options.stages}` }
      : typeof placement === 'object'
        ? {
            size: placement.length,
            why: `the stage placement ${formatStagePlacement(placement)} has ${placement.length} stages`,
          }
        : inferredSize(schedule, 'stage', (a) => a.stage);
  const microbatches =
    options.microbatches !== undefined
      ? { size: options.microbatches, why: `microbatches = ${options.microbatches}` }
      : inferredSize(schedule, 'microbatch', (a) => a.microbatch);
  forEachAction(schedule, (a, w, step) => {
    if (a.stage >= stages.size)
      problems.add('action', outOfRange(a, w, step, 'stage', a.stage, stages.size, stages.why), [
        { worker: w, step },
      ]);
    else if (a.microbatch >= microbatches.size)
      problems.add(
        'action',
        outOfRange(a, w, step, 'microbatch', a.microbatch, microbatches.size, microbatches.why),
        [{ worker: w, step }],
      );
  });
}

/** An inferred size: the first index no action uses. Past a gap, an index is a stray, not a size. */
function inferredSize(
  schedule: Schedule,
  name: string,
  index: (a: Action) => number,
): { size: number; why: string } {
  const used = new Set<number>();
  forEachAction(schedule, (a) => {
    used.add(index(a));
  });
  let size = 0;
  while (used.has(size)) size++;
  return { size, why: `inferred from the actions, and no action has ${name} ${size}` };
}

function outOfRange(
  a: Action,
  worker: number,
  step: number,
  name: string,
  value: number,
  size: number,
  why: string,
): string {
  const range = size > 0 ? ` 0..${size - 1}` : '';
  return `action ${formatAction(a)} on worker ${worker}, step ${step}: ${name} ${value} is out of range${range} (${why})`;
}

/**
 * How the rows themselves place the stages, when every stage appears in exactly one row: a hint for a
 * schedule written for another placement than the one it is given.
 */
function rowsHint(schedule: Schedule): string {
  const rows = scheduleShape(schedule).workerOfStage;
  let consistent = !rows.includes(-1);
  forEachAction(schedule, (a, w) => {
    if (rows[a.stage] !== w) consistent = false;
  });
  if (!consistent) return '';
  const name = namePlacement(rows, schedule.length);
  const which = name === null ? ' (an array stagePlacement)' : `, which is stagePlacement '${name}'`;
  return `; the rows place the stages as [${rows.join(', ')}]${which}`;
}

/** Calls `f` for every action, with its worker and step: both halves of an overlapped pair at its step. */
export function forEachAction(
  schedule: Schedule,
  f: (a: Action, worker: number, step: number) => void,
): void {
  for (let w = 0; w < schedule.length; w++) {
    const list = schedule[w]!;
    for (let step = 0; step < list.length; step++) {
      const slot = list[step] ?? null;
      if (slot === null) continue;
      if (slot.kind === 'OVERLAP_F_B') {
        f(slot.forward, w, step);
        f(slot.backward, w, step);
      } else f(slot, w, step);
    }
  }
}
