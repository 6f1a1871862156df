import { BackflowError } from '../errors.ts';

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

export interface Failpoint {
  /** Node id or name (for 'update': a parameter). */
  readonly node: number | string;
  /** A task's phase, or 'update': applying a step's update to the parameter (only 'throw'). */
  readonly phase: 'forward' | 'backward' | 'update';
  /** Any microbatch when absent. */
  readonly mb?: number;
  readonly replica?: number;
  /** Any step when absent. */
  readonly step?: number;
  readonly action: FailpointAction;
}

export class FailpointError extends BackflowError {
  readonly code = 'EFAILPOINT';
  readonly injected = true;
}
