import { BackflowError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import type { HostEffect, Task } from './host-types.ts';

/**
 * A deterministic fault injected into a host, for tests of the failure paths:
 * - 'throw': the task throws an error with code 'EFAILPOINT' (and a custom field);
 * - 'exit': the worker calls process.exit(0) (only meaningful on a thread);
 * - 'hang': the worker blocks forever in the task;
 * - 'pause': the worker reports that it reached the point, then blocks (the test kills it there);
 * - 'drop': the task's outgoing messages are lost (a missing contribution);
 * - 'dup': the task's outgoing messages are sent twice (duplicates must be dropped by their key).
 */
export type FailpointAction = 'throw' | 'exit' | 'hang' | 'pause' | 'drop' | 'dup';

/** Where and how `Runtime.setFailpoints` makes a task fail, for tests of failure handling. */
export interface Failpoint {
  /** Node id or name (for 'update': a parameter). */
  readonly node: number | string;
  /** A task's phase, or 'update': applying a step's update to the parameter (only 'throw'). */
  readonly phase: 'forward' | 'backward' | 'update';
  /** Any microbatch when absent. */
  readonly mb?: number;
  /** Any replica when absent. */
  readonly replica?: number;
  /** Any step when absent. */
  readonly step?: number;
  /** What happens there. */
  readonly action: FailpointAction;
}

export class FailpointError extends BackflowError {
  readonly code = 'EFAILPOINT';
  readonly injected = true;
}

/** The failpoint a task of `step` hits, if any: the first that names its node, phase and, if given, microbatch, replica and step. */
export function taskFailpoint(
  failpoints: readonly Failpoint[],
  task: Task<unknown>,
  step: number,
): Failpoint | undefined {
  const node = task.actor.node;
  const phase = task.phase === 'forward' ? 'forward' : 'backward';
  return failpoints.find(
    (f) =>
      (f.node === node.id || f.node === node.name) &&
      f.phase === phase &&
      (f.mb === undefined || f.mb === task.mb) &&
      (f.replica === undefined || f.replica === task.replica) &&
      (f.step === undefined || f.step === step),
  );
}

/** The failpoint step `step`'s update hits, if any: a 'throw' on a parameter the host holds (`holds`). */
export function updateFailpoint(
  failpoints: readonly Failpoint[],
  step: number,
  holds: (node: number | string) => boolean,
): Failpoint | undefined {
  return failpoints.find(
    (f) =>
      f.phase === 'update' &&
      f.action === 'throw' &&
      (f.step === undefined || f.step === step) &&
      holds(f.node),
  );
}

/**
 * Before a task runs, its failpoint: a 'throw' throws; any other goes to the shell as an effect, and
 * only a 'drop' or a 'dup' lets the task run (false: it does not).
 */
export function beforeTask<T>(fp: Failpoint, task: Task<T>, effects: HostEffect<T>[]): boolean {
  if (fp.action === 'throw') {
    throw new FailpointError(`failpoint: ${fp.phase} of ${label(task.actor.node)} microbatch ${task.mb}`, {
      phase: fp.phase,
    });
  }
  const { phase, node, stage, replica, mb } = task;
  effects.push({ kind: 'failpoint', action: fp.action, task: { phase, node, stage, replica, mb } });
  return fp.action === 'drop' || fp.action === 'dup';
}

/** After the task ran: a dropped task's messages are lost (its reports still go out); a duplicating one sends twice. */
export function afterTask<T>(fp: Failpoint, effects: HostEffect<T>[]): HostEffect<T>[] {
  // A shard's loss for another host (Note [local update]) is a message too.
  const message = (e: HostEffect<T>) => e.kind === 'send' || e.kind === 'loss';
  if (fp.action === 'drop') return effects.filter((e) => !message(e));
  if (fp.action === 'dup') for (const e of effects.filter(message)) effects.push(e);
  return effects;
}
