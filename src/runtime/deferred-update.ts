import type { StepUpdate } from '../actor/messages.ts';
import { StepTimeoutError, WorkerError } from '../errors.ts';
import type { Cluster } from './cluster.ts';

// Note [deferred update]
// With the optimizer on the workers, a step resolves as soon as its loss and every parameter's
// sum of squares are in: the coordinator then knows the global norm, the clipping factor and that
// everything is finite, which is all the update depends on. The update itself goes to every host
// on its data port, behind the step's data and ahead of the next step's start, so no host can
// start the next step with old parameters, and the step does not wait for it. This took two
// control round trips (prepare on every worker, then commit) off every step's critical path:
// about 1.4 ms of a 3.8 ms data-parallel step. Each host checks it holds every gradient, updates
// in place (a copy of a replicated parameter first waits for contributions still on their way:
// Host.applyUpdate), and acknowledges with an 'updated' report. Everything that reads or writes
// parameters or optimizer state (getParams, setParams, the optimizer state, stats) first waits for
// those acknowledgements, so it sees the update. A failed update (phase 'update') breaks the
// runtime: its hosts may now disagree about the parameters, so the next call rejects with it. A
// host that refuses the update message itself reports that as the update's failure too. The
// deadline's timer keeps the process alive while an acknowledgement is awaited (Note [idle workers]).
// Where every worker holds every parameter, the hosts may decide the update themselves instead
// (Note [local update] in src/actor/local-update.ts): no update is sent, and the acknowledgements,
// which may then come before the coordinator has every report, are awaited the same way.

interface PendingUpdate {
  readonly step: number;
  /** Hosts yet to acknowledge. */
  remaining: number;
  readonly done: Promise<void>;
  settle(err: Error | null): void;
}

/** The updates the coordinator sends (Note [deferred update]): the last one until every host has applied it. */
export class DeferredUpdates {
  /** Updates sent so far (the optimizer's step count). */
  count = 0;
  private pending: PendingUpdate | null = null;
  /**
   * Acknowledgements that came before their step's update was tracked: under Note [local update] a
   * host applies the update as soon as it has decided, which may be before the coordinator has every
   * report. By step.
   */
  private readonly early = new Map<number, number>();

  /** `timedOut`: an update not every one of the `workers` hosts acknowledged in time, which breaks the runtime. */
  constructor(
    private readonly cluster: Cluster,
    private readonly workers: number,
    private readonly timeoutMs: number,
    private readonly timedOut: (err: Error) => void,
  ) {}

  /** Sends a step's update to every host and tracks their acknowledgements. */
  send(u: StepUpdate): void {
    this.track(u.step);
    this.cluster.update(u);
  }

  /** Every host applies step `step`'s update itself (Note [local update]): tracks their acknowledgements. */
  expect(step: number): void {
    this.track(step);
  }

  /** The acknowledgements a step's update waits for, those that already came counted. */
  private track(step: number): void {
    let settle!: (err: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === null ? resolve() : reject(err));
    });
    // Awaited by the next control call; a failure nobody awaits is not an unhandled rejection.
    done.catch(() => {});
    const timeoutMs = this.timeoutMs;
    const workers = this.workers;
    const timer = setTimeout(() => {
      const err = new StepTimeoutError(
        `the update of step ${step} was not acknowledged by ${pending.remaining} of ${workers} workers within ${timeoutMs} ms`,
        { step },
      );
      this.timedOut(err);
      pending.settle(err);
    }, timeoutMs);
    const pending: PendingUpdate = {
      step,
      remaining: workers - (this.early.get(step) ?? 0),
      done,
      settle: (err) => {
        clearTimeout(timer);
        if (this.pending === pending) this.pending = null;
        settle(err);
      },
    };
    this.early.clear();
    this.pending = pending;
    this.count++;
    if (pending.remaining === 0) pending.settle(null);
  }

  /** A host applied step `step`'s update (an 'updated' report). */
  acknowledge(step: number): void {
    const pending = this.pending;
    if (pending !== null && pending.step === step) {
      if (--pending.remaining === 0) pending.settle(null);
    } else if (pending === null || pending.step < step) this.early.set(step, (this.early.get(step) ?? 0) + 1);
  }

  /**
   * Step `step`, whose update every host decides itself (Note [local update]), failed; `applied` is
   * the step of each host's last applied update. Drops the step's early acknowledgements; when a host
   * applied its update, the error that breaks the runtime (the hosts' parameters may differ).
   */
  failedAfterApplied(step: number, applied: readonly number[], error: Error): WorkerError | null {
    this.early.delete(step);
    const hosts = applied.flatMap((s, w) => (s >= step ? [w] : []));
    if (hosts.length === 0) return null;
    return new WorkerError(
      `step ${step} failed after worker${hosts.length > 1 ? 's' : ''} ${hosts.join(', ')} applied its update (each host decides its own: Note [local update]); the workers' parameters may differ, so the runtime cannot continue: ${error.message}`,
      { step, workers: hosts },
      { cause: error },
    );
  }

  /** A host failed step `step`'s update: true when that is the update in flight, which fails with `err`. */
  failed(step: number, err: Error): boolean {
    const pending = this.pending;
    if (pending === null || pending.step !== step) return false;
    pending.settle(err);
    return true;
  }

  /** The runtime broke: the update in flight, if any, fails with `err`. */
  abort(err: Error): void {
    this.pending?.settle(err);
  }

  /** Waits until the last update is applied on every host, or has failed. */
  async settled(): Promise<void> {
    if (this.pending !== null) await this.pending.done.catch(() => {});
  }
}
