import { fmtFound, InputError, RestartLimitError, StepTimeoutError, WorkerError } from '../errors.ts';

// Note [bounded restarts]
// A worker that dies or exits breaks the runtime for good, and a hung one fails its step after
// `stepTimeoutMs` (fail-stop: invariant 6 in docs/architecture.md). With `restarts`, the Trainer
// supervises the runtime one-for-all, as torchrun and Erlang's supervisors do: it closes the whole
// runtime (the survivors may hold parameters one update ahead of the dead worker's, so no worker is
// kept), starts a new one, and loads the last checkpoint the fit wrote, or, before the first one,
// the state the fit started from (kept in memory for this). That is a resume in all but the process,
// so the run goes on bitwise as if nothing had failed: the same data order (the checkpoint's cursor),
// the same optimizer state and update count; only the steps since that checkpoint are run again.
// A fault that comes back at once would restart for ever: a restart that makes more than `max`
// within `withinMs` fails the fit with a RestartLimitError listing every failure instead. Only worker
// faults are restarted; any other error (a bad option, a non-finite step, a checkpoint the disk
// refuses) would fail again the same way, and fails the fit at once.

/** At most `max` restarts within any `withinMs` milliseconds (Note [bounded restarts]). */
export interface RestartOptions {
  /** Restarts allowed within `withinMs`; one more fails the fit with a RestartLimitError. */
  max: number;
  /** The window, in milliseconds, over which restarts are counted. */
  withinMs: number;
}

/** A restart, told to `FitCallbacks.onRestart` and, as one line, to `onWarning`. */
export interface RestartEvent {
  /** This fit's restarts so far, this one included. */
  restart: number;
  /** The worker fault: a WorkerError or a StepTimeoutError. */
  cause: Error;
  /** Steps done when it failed. */
  failedAfter: number;
  /** Steps done in the state training went back to. */
  resumedAt: number;
  /** The checkpoint directory that state came from, or null: the state the fit started from. */
  checkpointDir: string | null;
}

/** One worker fault of a fit: what failed, after how many steps, and when (ms, for the window). */
export interface Failure {
  readonly error: Error;
  readonly step: number;
  readonly at: number;
}

/** Whether the Trainer restarts from this error: a worker died, exited, failed or hung. */
export function isWorkerFault(error: unknown): error is WorkerError | StepTimeoutError {
  return error instanceof WorkerError || error instanceof StepTimeoutError;
}

export function checkRestarts(value: unknown, where: string): RestartOptions {
  const bad = (what: string, expected: string, found: unknown): never => {
    throw new InputError(`${where}: ${what}: expected ${expected}, found ${fmtFound(found)}`, {
      expected,
      found,
    });
  };
  if (typeof value !== 'object' || value === null) return bad('restarts', '{ max, withinMs }', value);
  const { max, withinMs } = value as Partial<RestartOptions>;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 0)
    bad('restarts.max', 'an integer >= 0', max);
  if (typeof withinMs !== 'number' || !(withinMs > 0)) bad('restarts.withinMs', 'a number > 0', withinMs);
  for (const key of Object.keys(value)) {
    if (key !== 'max' && key !== 'withinMs') bad(`restarts.${key}`, 'only max and withinMs', key);
  }
  return { max: max!, withinMs: withinMs! };
}

/** Whether restarting after the last of `failures` keeps within the limit: the failures in its window are the restarts. */
export function mayRestart(failures: readonly Failure[], options: RestartOptions): boolean {
  const now = failures[failures.length - 1]!.at;
  return failures.filter((f) => now - f.at < options.withinMs).length <= options.max;
}

/** The error a fit fails with past the limit: every failure of the fit, one line each. */
export function restartLimitError(failures: readonly Failure[], options: RestartOptions): RestartLimitError {
  const now = failures[failures.length - 1]!.at;
  const recent = failures.filter((f) => now - f.at < options.withinMs).length;
  const lines = failures.map(
    (f, i) => `  ${i + 1}. after step ${f.step}: ${f.error.name}: ${f.error.message.split('\n')[0]}`,
  );
  return new RestartLimitError(
    `fit: ${recent} worker faults within ${options.withinMs} ms, more than restarts.max = ${options.max} allows; every fault of this fit:\n${lines.join('\n')}`,
    { max: options.max, withinMs: options.withinMs, faults: failures.length },
    failures.map((f) => f.error),
  );
}

/** The line `onWarning` gets for a restart. */
export function restartWarning(e: RestartEvent, options: RestartOptions): string {
  const from =
    e.checkpointDir === null ? 'the state the fit started from' : `the checkpoint in ${e.checkpointDir}`;
  return `restart ${e.restart} (at most ${options.max} within ${options.withinMs} ms) after step ${e.failedAfter}: ${e.cause.name}: ${e.cause.message.split('\n')[0]}; going on from step ${e.resumedAt}, ${from}`;
}
