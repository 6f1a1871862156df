// Stopping `backflow train` by a signal: the first SIGINT or SIGTERM lets the step in flight finish
// and a checkpoint be saved (FitOptions.signal); a second one quits at once.

/** The exit code of a run a signal stopped: 128 + the signal's number, as a shell reports it. */
export const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/**
 * Runs `f` with an AbortSignal that the first SIGINT or SIGTERM aborts, after printing `what` that
 * means; a second signal exits at once. The handlers are removed once `f` settles.
 */
export async function stoppable<T>(
  what: string,
  f: (signal: AbortSignal) => Promise<T>,
): Promise<{ value: T; stoppedBy: StopSignal | null }> {
  const controller = new AbortController();
  const handlers = (Object.keys(STOP_SIGNALS) as StopSignal[]).map((name) => {
    const handler = () => {
      if (controller.signal.aborted) process.exit(STOP_SIGNALS[name]);
      console.error(`\nbackflow train: ${name}: ${what} (${name} again to quit at once)`);
      controller.abort(name);
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  try {
    const value = await f(controller.signal);
    return { value, stoppedBy: controller.signal.aborted ? (controller.signal.reason as StopSignal) : null };
  } finally {
    for (const [name, handler] of handlers) process.off(name, handler);
  }
}
