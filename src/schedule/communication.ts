import { ScheduleError } from '../errors.ts';
import {
  type Action,
  action,
  actionsOf,
  formatAction,
  isCommunication,
  type OverlappedAction,
  type Schedule,
  type Slot,
} from './action.ts';
import { validateSchedule } from './validate.ts';

/**
 * Lowers a compute-only schedule to one with explicit communication: for every hop between stages
 * on different workers, SEND_F right after the forward that produces the activation and RECV_F right
 * before the forward that consumes it; SEND_B right after the B (or I) that produces the input
 * gradient and RECV_B right before the B (or I) that consumes it. Hops between stages on the same
 * worker need nothing. Idle slots are dropped: with explicit receives, waiting is what a RECV does.
 *
 * Why this order cannot deadlock (when the compute-only schedule does not): sends never block, and
 * each receive sits immediately before the only action that needs it, so a worker blocks on a RECV
 * exactly when, without communication, it would block on that action's remote input. The blocking
 * relation between workers is the same as the compute-only schedule's, which the validator has run.
 */
export function insertCommunication(schedule: Schedule): (Action | OverlappedAction)[][] {
  for (const [w, list] of schedule.entries())
    for (const [step, slot] of list.entries()) {
      const talks = actionsOf(slot).find(isCommunication);
      if (talks)
        throw new ScheduleError(
          `insertCommunication: the schedule already communicates (${formatAction(talks)} at worker ${w}, ` +
            `step ${step}); expected a compute-only schedule (F, B, I, W)`,
          { rule: 'compute only', worker: w, step, found: formatAction(talks) },
        );
    }
  const shape = validateSchedule(schedule);
  const { stages, workerOfStage } = shape;
  const crosses = (a: number, b: number) => workerOfStage[a] !== workerOfStage[b];
  return schedule.map((list) => {
    const out: (Action | OverlappedAction)[] = [];
    for (const slot of list) {
      if (slot === null) continue;
      // An overlapped pair receives for both halves before it and sends for both after it: it starts
      // when both halves can (Note [overlapped F and B]).
      const halves = actionsOf(slot);
      for (const { kind, stage: s, microbatch: mb } of halves) {
        if (kind === 'F' && s > 0 && crosses(s - 1, s)) out.push(action('RECV_F', s, mb));
        if ((kind === 'B' || kind === 'I') && s < stages - 1 && crosses(s, s + 1))
          out.push(action('RECV_B', s, mb));
      }
      out.push(slot);
      for (const { kind, stage: s, microbatch: mb } of halves) {
        if (kind === 'F' && s < stages - 1 && crosses(s, s + 1)) out.push(action('SEND_F', s, mb));
        if ((kind === 'B' || kind === 'I') && s > 0 && crosses(s - 1, s)) out.push(action('SEND_B', s, mb));
      }
    }
    return out;
  });
}

/** The compute-only schedule under a lowered one: drops every SEND and RECV (and idle slots stay). */
export function stripCommunication(schedule: Schedule): Slot[][] {
  return schedule.map((list) =>
    list.filter((slot) => slot === null || !actionsOf(slot).some(isCommunication)),
  );
}
