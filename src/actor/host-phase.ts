// Where a host is in its step, and every way it moves on: pure logic, the host performs the actions.

/**
 * - 'idle': no step yet, or the step was dropped (`reset`);
 * - 'running': the step's tasks run as their inputs and contributions arrive;
 * - 'running-local': so do they, and this host decides the step's update itself once every gradient
 *   and loss is in (Note [local update] in local-update.ts);
 * - 'failed': a task threw (and reported it); no task runs until the next step starts;
 * - 'update-pending': the step's update arrived before a gradient it needs (a replicated
 *   parameter's copy still waits for another replica's contributions, which travel on another port
 *   than the update);
 * - 'update-pending-start': so did the next step's start, which waits behind the update (or behind
 *   the local decision);
 * - 'updated': the step's update ran (applied, or failed and reported); a second one is dropped.
 */
export type HostPhase =
  | 'idle'
  | 'running'
  | 'running-local'
  | 'failed'
  | 'update-pending'
  | 'update-pending-start'
  | 'updated';

/**
 * - 'start': a step start arrives;
 * - 'update' / 'early-update': the step's update arrives, with every gradient it needs here / before
 *   one of them;
 * - 'gradients': the last gradient a pending update needs is kept;
 * - 'decide': every gradient and loss of a step whose update is this host's to decide is in;
 * - 'task-failed': a task threw;
 * - 'reset': the shell drops the step (after a failure or a timeout).
 */
export type HostEvent =
  | 'start'
  | 'update'
  | 'early-update'
  | 'gradients'
  | 'decide'
  | 'task-failed'
  | 'reset';

/**
 * The phase an event leads to, and what the host does with the event: 'run' it (start the step,
 * apply the update), 'park' it until the update has run, 'drop' it (counted: a duplicate), or nothing.
 */
export interface Transition {
  readonly phase: HostPhase;
  readonly action: 'run' | 'park' | 'drop' | 'none';
}

const pending = (phase: HostPhase) => phase === 'update-pending' || phase === 'update-pending-start';
const to = (phase: HostPhase, action: Transition['action']): Transition => ({ phase, action });

// The update needs every gradient of the step, so once it has arrived every task of the step has
// run: a task fails only while idle, running or failed, and whatever phase it fails in, no task
// runs after it until the next start.
const TRANSITIONS: { readonly [E in HostEvent]: (phase: HostPhase) => Transition } = {
  // No step starts before the last one's update has run, or been decided here: its parameters would
  // be stale. The host makes a step it decides 'running-local' once started.
  start: (p) =>
    pending(p) || p === 'running-local' ? to('update-pending-start', 'park') : to('running', 'run'),
  // A host that decides the step's update takes none from elsewhere (dropped, counted).
  update: (p) =>
    pending(p) || p === 'updated' || p === 'running-local' ? to(p, 'drop') : to('updated', 'run'),
  'early-update': (p) =>
    pending(p) || p === 'updated' || p === 'running-local' ? to(p, 'drop') : to('update-pending', 'park'),
  // Then a parked start runs too.
  gradients: (p) => (pending(p) ? to('updated', 'run') : to(p, 'none')),
  decide: (p) =>
    p === 'running-local' || p === 'update-pending-start' ? to('updated', 'run') : to(p, 'none'),
  'task-failed': () => to('failed', 'none'),
  // A parked update and start are dropped with the step; a duplicate of an update that ran still is.
  reset: (p) => to(p === 'updated' ? 'updated' : 'idle', 'none'),
};

export function transition(phase: HostPhase, event: HostEvent): Transition {
  return TRANSITIONS[event](phase);
}
