import {
  ACTION_KINDS,
  type Action,
  type ActionKind,
  formatAction,
  formatSlot,
  type Schedule,
} from './action.ts';
import {
  checkForm,
  checkNotEmpty,
  checkRowsInto,
  checkSizes,
  forEachAction,
  Problems,
  type ScheduleProblem,
  throwProblems,
} from './action-rules.ts';
import { type Dependency, EventIndex, execute, formatDependency, type ScheduleEvent } from './execute.ts';
import type { GridMark } from './grid.ts';
import { formatStagePlacement, type ScheduleShape, type ShapeOptions, scheduleShape } from './placement.ts';

export type { ScheduleProblem } from './action-rules.ts';

/**
 * The validator: proves that every worker's list is consistent with the others before anything runs.
 * Rules (the `rule` of each problem):
 *   action                  every slot is null or a well-formed action, its stage and microbatch in
 *                           range: below the given sizes, or, when a size is inferred, below the
 *                           first index no action uses (so a stray 1F7 is named, not 1F4 .. 1F6
 *                           reported missing)
 *   not empty               some row has a compute action
 *   placement               all actions of a stage are on one worker: the worker the stage placement
 *                           gives it (Note [stage placement]) when one is given
 *   exactly once            each (stage, microbatch) has one F and one backward: B, or I and W
 *   matching receive/send   with explicit communication, each cross-worker hop of each microbatch has
 *                           its SEND_F/RECV_F and SEND_B/RECV_B pair, on the right workers
 *   needless communication  no send or receive between stages on the same worker, before stage 0 or
 *                           after the last stage
 *   F before B, I before W, stage order, receive before compute, send after compute
 *                           what an action needs from its own worker comes earlier in that worker's
 *                           list (Note [schedule events] lists the dependencies)
 *   no deadlock             run with blocking receives, every list reaches its end
 * Sizes are inferred from the actions unless given; without a stage placement, each stage's worker
 * is the row that mentions it.
 */
export type ValidateOptions = ShapeOptions;

/** Checks `schedule` and returns its shape; throws a ScheduleError showing the grid otherwise. */
export function validateSchedule(schedule: Schedule, options: ValidateOptions = {}): ScheduleShape {
  const problems = findScheduleProblems(schedule, options);
  if (problems.length > 0) throwProblems(schedule, problems);
  return scheduleShape(schedule, options);
}

/** Every problem found (up to a cap), in the order: form, placement, completeness, order, deadlock. */
export function findScheduleProblems(schedule: Schedule, options: ValidateOptions = {}): ScheduleProblem[] {
  const problems = new Problems();
  checkForm(schedule, problems);
  if (problems.any()) return problems.list;
  checkNotEmpty(schedule, problems);
  if (problems.any()) return problems.list;
  checkSizes(schedule, options, problems);
  if (problems.any()) return problems.list;
  const shape = scheduleShape(schedule, options);
  if (options.stagePlacement !== undefined)
    checkRowsInto(
      schedule,
      shape.workerOfStage,
      `the stage placement ${formatStagePlacement(options.stagePlacement)}`,
      problems,
    );
  if (problems.any()) return problems.list;
  const positions = new Positions(shape);
  checkPlacement(schedule, positions, problems);
  if (problems.any()) return problems.list;
  for (let s = 0; s < shape.stages; s++)
    for (let mb = 0; mb < shape.microbatches; mb++) {
      checkComplete(positions, s, mb, problems);
      if (shape.explicitCommunication && s + 1 < shape.stages) {
        checkHop(positions, 'SEND_F', s, 'RECV_F', s + 1, mb, problems);
        checkHop(positions, 'SEND_B', s + 1, 'RECV_B', s, mb, problems);
      }
    }
  if (problems.any()) return problems.list;
  checkLocalOrder(schedule, positions, problems);
  if (problems.any()) return problems.list;
  checkDeadlock(schedule, positions, problems);
  return problems.list;
}

/** Where each action is: its step in its stage's worker's list, or -1. */
class Positions {
  private readonly steps: Int32Array;
  constructor(readonly shape: ScheduleShape) {
    this.steps = new Int32Array(ACTION_KINDS.length * shape.stages * shape.microbatches).fill(-1);
  }
  index(kind: ActionKind, stage: number, mb: number): number {
    return (KIND_INDEX[kind] * this.shape.stages + stage) * this.shape.microbatches + mb;
  }
  step(kind: ActionKind, stage: number, mb: number): number {
    return this.steps[this.index(kind, stage, mb)]!;
  }
  /** Records `a` at `step`; returns the step of an earlier copy, or -1. */
  record(a: Action, step: number): number {
    const i = this.index(a.kind, a.stage, a.microbatch);
    const earlier = this.steps[i]!;
    if (earlier < 0) this.steps[i] = step;
    return earlier;
  }
  /** The step of an event (an input gradient is its B or its I). */
  eventStep(d: Dependency): number {
    if (d.event !== 'G') return this.step(d.event, d.stage, d.microbatch);
    return Math.max(this.step('B', d.stage, d.microbatch), this.step('I', d.stage, d.microbatch));
  }
  /** The grid cell of an action, if it exists. */
  at(kind: ActionKind, stage: number, mb: number): GridMark[] {
    const step = this.step(kind, stage, mb);
    return step >= 0 ? [{ worker: this.shape.workerOfStage[stage]!, step }] : [];
  }
}

/** One worker per stage, no duplicates, no communication without a hop; fills `positions`. */
function checkPlacement(schedule: Schedule, positions: Positions, problems: Problems): void {
  const { shape } = positions;
  const misplaced = new Set<number>();
  forEachAction(schedule, (a, w, step) => {
    const owner = shape.workerOfStage[a.stage]!;
    if (owner !== w) {
      if (!misplaced.has(a.stage))
        problems.add(
          'placement',
          `stage ${a.stage} runs on worker ${owner} and on worker ${w} (${formatAction(a)} at step ${step}); ` +
            'a stage lives on one worker',
          [{ worker: w, step }],
        );
      misplaced.add(a.stage);
      return;
    }
    const earlier = positions.record(a, step);
    if (earlier >= 0)
      problems.add(
        'exactly once',
        `${formatAction(a)} appears twice on worker ${w}, at steps ${earlier} and ${step}`,
        [
          { worker: w, step: earlier },
          { worker: w, step },
        ],
      );
    const needless = needlessReason(a, shape);
    if (needless)
      problems.add('needless communication', `${formatAction(a)} at worker ${w}, step ${step}: ${needless}`, [
        { worker: w, step },
      ]);
  });
}

/**
 * One F and one backward (B, or I and W) for stage s and microbatch mb. A missing action has no cell:
 * the mark goes on its partner (the forward of a missing backward ...).
 */
function checkComplete(positions: Positions, s: number, mb: number, problems: Problems): void {
  const f = positions.step('F', s, mb) >= 0;
  const b = positions.step('B', s, mb) >= 0;
  const i = positions.step('I', s, mb) >= 0;
  const w = positions.step('W', s, mb) >= 0;
  if (f && (b ? !i && !w : i && w)) return;
  const name = (kind: ActionKind) => formatAction({ kind, stage: s, microbatch: mb });
  const at = (kind: ActionKind) => positions.at(kind, s, mb);
  if (!f)
    problems.add('exactly once', `${name('F')} is missing: every stage runs every microbatch forward`, [
      ...at('B'),
      ...at('I'),
    ]);
  if (b && (i || w))
    problems.add(
      'exactly once',
      `${name('B')} and ${name(i ? 'I' : 'W')} both present: a backward is B, or I and W`,
      [...at('B'), ...at(i ? 'I' : 'W')],
    );
  else if (i && !w)
    problems.add(
      'exactly once',
      `${name('W')} is missing: ${name('I')} has no weight-gradient half`,
      at('I'),
    );
  else if (w && !i)
    problems.add('exactly once', `${name('I')} is missing: ${name('W')} has no input-gradient half`, at('W'));
  else if (!b && !i)
    problems.add(
      'exactly once',
      `the backward of stage ${s}, microbatch ${mb} is missing (${name('B')}, or ${name('I')} and ${name('W')})`,
      at('F'),
    );
}

/** With explicit communication, a hop between stages on different workers has its send and receive. */
function checkHop(
  positions: Positions,
  send: ActionKind,
  sender: number,
  recv: ActionKind,
  receiver: number,
  mb: number,
  problems: Problems,
): void {
  const { workerOfStage } = positions.shape;
  const [ws, wr] = [workerOfStage[sender]!, workerOfStage[receiver]!];
  if (ws === wr || ws < 0 || wr < 0) return;
  const sendName = formatAction({ kind: send, stage: sender, microbatch: mb });
  const recvName = formatAction({ kind: recv, stage: receiver, microbatch: mb });
  const hasSend = positions.step(send, sender, mb) >= 0;
  const hasRecv = positions.step(recv, receiver, mb) >= 0;
  if (hasSend && !hasRecv)
    problems.add(
      'matching receive',
      `${sendName} on worker ${ws} has no matching ${recvName} on worker ${wr}`,
      positions.at(send, sender, mb),
    );
  else if (!hasSend && hasRecv)
    problems.add(
      'matching send',
      `${recvName} on worker ${wr} has no matching ${sendName} on worker ${ws}`,
      positions.at(recv, receiver, mb),
    );
  else if (!hasSend && !hasRecv) {
    const producer =
      send === 'SEND_F'
        ? positions.at('F', sender, mb)
        : [...positions.at('B', sender, mb), ...positions.at('I', sender, mb)];
    problems.add(
      'matching receive',
      `${sendName} (worker ${ws}) and ${recvName} (worker ${wr}) are missing: stage ${sender} -> ${receiver} ` +
        'crosses workers, and this schedule has explicit communication',
      producer,
    );
  }
}

/** What an action needs from its own worker comes earlier in that worker's list. */
function checkLocalOrder(schedule: Schedule, positions: Positions, problems: Problems): void {
  const { workerOfStage } = positions.shape;
  const events = new EventIndex(positions.shape);
  forEachAction(schedule, (a, w, step) => {
    for (const d of events.dependencies(a)) {
      if (workerOfStage[d.stage] !== w) continue;
      const depStep = positions.eventStep(d);
      if (depStep > step)
        problems.add(
          orderRule(a, d.event),
          `${formatAction(a)} (worker ${w}, step ${step}) runs before ${formatDependency(d)} (step ${depStep}), ` +
            'which it needs',
          [
            { worker: w, step },
            { worker: w, step: depStep },
          ],
        );
    }
  });
}

/** Runs the lists with blocking receives; every worker must reach the end of its list. */
function checkDeadlock(schedule: Schedule, positions: Positions, problems: Problems): void {
  const { blocked } = execute(schedule, positions.shape);
  if (blocked.length === 0) return;
  const stuck = blocked.map((b) => {
    const step = positions.eventStep(b.waitsFor);
    const owner = positions.shape.workerOfStage[b.waitsFor.stage]!;
    const there = step >= 0 ? `worker ${owner} has it at step ${step}` : 'nobody runs it';
    return (
      `worker ${b.worker} waits at step ${b.step} (${formatSlot(b.action)}) for ` +
      `${formatDependency(b.waitsFor)} (${there})`
    );
  });
  problems.add(
    'no deadlock',
    `no worker can advance: ${stuck.join('; ')}`,
    blocked.map((b) => ({ worker: b.worker, step: b.step })),
  );
}

const KIND_INDEX = Object.fromEntries(ACTION_KINDS.map((k, i) => [k, i])) as Record<ActionKind, number>;

function orderRule(a: Action, needs: ScheduleEvent): string {
  if (needs === 'RECV_F' || needs === 'RECV_B') return 'receive before compute';
  if (a.kind === 'SEND_F' || a.kind === 'SEND_B') return 'send after compute';
  if (a.kind === 'W') return 'I before W';
  if (needs === 'F' && a.kind !== 'F') return 'F before B';
  return 'stage order';
}

/** Why a communication action has no hop to serve, or null. */
function needlessReason(a: Action, shape: ScheduleShape): string | null {
  if (a.kind === 'F' || a.kind === 'B' || a.kind === 'I' || a.kind === 'W') return null;
  const { stages, workerOfStage } = shape;
  const peer = a.kind === 'SEND_F' || a.kind === 'RECV_B' ? a.stage + 1 : a.stage - 1;
  if (peer < 0 || peer >= stages) return `stage ${a.stage} has no stage ${peer} to talk to`;
  if (workerOfStage[peer] === workerOfStage[a.stage])
    return `stages ${a.stage} and ${peer} are both on worker ${workerOfStage[peer]}, so nothing crosses a port`;
  return null;
}
