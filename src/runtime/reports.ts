import type { ErrorReport, Report } from '../actor/messages.ts';
import { MemoryBudgetError, WorkerError } from '../errors.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { DeferredUpdates } from './deferred-update.ts';
import type { Inference } from './infer.ts';
import type { StepState } from './step.ts';

/** What report handlers see of the coordinator. */
export interface ReportTarget {
  readonly microbatches: number;
  /** Every host decides and applies each step's update itself (Note [local update]). */
  readonly localUpdates: boolean;
  /** The training step in flight, when it is step `step`. */
  inFlight(step: number): StepState | null;
  /** The inference in flight, when it is step `step` (Note [inference steps]). */
  inference(step: number): Inference | null;
  /** The last step's update (Note [deferred update]). */
  readonly updates: DeferredUpdates;
  /** The step may be complete now. */
  maybeFinish(state: StepState): void;
  /** Fails the step in flight, if any; `fatal` breaks the runtime for good. */
  fail(error: Error, fatal: boolean): void;
  /** An envelope was refused: fails the step in flight, or else the next (Note [refused envelopes]). */
  refused(error: Error): void;
}

type ReportOf<K extends Report['kind']> = Extract<Report<Tensor>, { kind: K }>;
type Handlers = { readonly [K in Report['kind']]: (t: ReportTarget, worker: number, r: ReportOf<K>) => void };

/**
 * What the coordinator does with each report of a host. A report of a step that is no longer in
 * flight (it failed, or timed out) is dropped, as is an acknowledgement of an update already settled.
 */
export const REPORTS: Handlers = {
  loss(t, _, r) {
    const state = t.inFlight(r.step);
    if (state === null) return;
    state.losses.set(r.replica * t.microbatches + r.mb, r.value);
    t.maybeFinish(state);
  },
  grad(t, _, r) {
    const state = t.inFlight(r.step);
    if (state === null) return;
    state.grads.set(r.node, r.tensor);
    t.maybeFinish(state);
  },
  // Note [input gradients]: one per shard; a second one for a shard is a duplicate.
  inputGrad(t, _, r) {
    const state = t.inFlight(r.step);
    if (state === null) return;
    let parts = state.inputGrads.get(r.node);
    if (parts === undefined) state.inputGrads.set(r.node, (parts = []));
    const k = r.replica * t.microbatches + r.mb;
    if (parts[k] !== undefined) return;
    parts[k] = r.tensor;
    state.inputReports++;
    t.maybeFinish(state);
  },
  output(t, _, r) {
    t.inference(r.step)?.receive(r.mb, r.replica, r.node, r.tensor);
  },
  gradNorm(t, _, r) {
    const state = t.inFlight(r.step);
    if (state === null) return;
    state.sumsq.set(r.node, r.sumsq);
    t.maybeFinish(state);
  },
  anomaly(t, _, r) {
    t.inFlight(r.step)?.anomalies.push(r);
  },
  // A failed update breaks the runtime (its hosts may now disagree about the parameters); a refused
  // envelope fails whatever step is in flight (Note [refused envelopes] in host-shell.ts); a failed
  // task fails its step.
  failed(t, worker, r) {
    const { phase } = r.error.context;
    if (phase === 'update') {
      const err = workerError(worker, r.error);
      // Under Note [local update] a host may fail its update before the coordinator has every report.
      if (t.updates.failed(r.step, err) || t.localUpdates) {
        t.fail(err, true);
        return;
      }
    }
    if (phase === 'receive') t.refused(workerError(worker, r.error));
    else if (t.inFlight(r.step) !== null || t.inference(r.step) !== null)
      t.fail(workerError(worker, r.error), false);
  },
  updated(t, _, r) {
    t.updates.acknowledge(r.step);
  },
};

/** Hands a report to its handler. */
export function handleReport(t: ReportTarget, worker: number, report: Report<Tensor>): void {
  dispatch(REPORTS, t, worker, report);
}

function dispatch<K extends Report['kind']>(
  handlers: Handlers,
  t: ReportTarget,
  worker: number,
  r: ReportOf<K>,
): void {
  const handler: Handlers[K] = handlers[r.kind];
  handler(t, worker, r);
}

/**
 * A host's error report as a WorkerError naming where it happened, its cause with the original stack;
 * a MemoryBudgetError stays one (the step did not fit, nothing broke: Note [memory budget]).
 */
function workerError(worker: number, e: ErrorReport): WorkerError | MemoryBudgetError {
  const where = [
    `worker ${worker}`,
    e.context.node !== undefined ? `node ${e.context.node}${e.context.op ? ` (${e.context.op})` : ''}` : '',
    e.context.phase ? `${e.context.phase}` : '',
    e.context.microbatch !== undefined ? `microbatch ${e.context.microbatch}` : '',
    e.context.replica !== undefined ? `replica ${e.context.replica}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const cause = Object.assign(new Error(e.message), {
    name: e.name,
    stack: e.stack,
    code: e.code,
    ...e.fields,
  });
  const Type = e.name === 'MemoryBudgetError' ? MemoryBudgetError : WorkerError;
  return new Type(`${e.name}: ${e.message} [${where}]`, { ...e.context, worker, cause: e }, { cause });
}
