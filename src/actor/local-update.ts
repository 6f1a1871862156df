import { clipScale, globalNormOf } from '../optim/spec.ts';
import { dict } from '../util/names.ts';
import type { LocalUpdateRule, StepStart } from './messages.ts';

// Note [local update]
// With the optimizer on the workers, a step's update waits for the coordinator's word (Note
// [deferred update] in src/runtime/deferred-update.ts): every loss and every parameter's sum of
// squares go to the coordinator, which decides, and its update comes back with the next start, so
// the update runs on the critical path between two steps. When every worker holds a copy of every
// parameter that gets a gradient (replicated parameters, one worker per replica; or one worker),
// each host has all it takes to decide for itself: every parameter's whole gradient, summed in the
// order of Note [gradient sum order] and so bitwise the same on every host, and so every sum of
// squares and the global norm (Note [global norm order]); the losses of the other replicas come
// from their hosts, which send each shard's loss to every other host. The coordinator then puts the
// update's rate and the clipping norm in the step's start, and each host, once it has every
// gradient and every loss, computes what the coordinator computes: the batch's loss (in the order
// of stepResult), the global norm, whether both are finite, and the clipping factor. Finite: it
// applies the update at once and acknowledges it (`updated`); the reports the coordinator waits for
// have left first (the shell flushes them before the update runs), so the update overlaps their
// way to the coordinator and the next start's way back. Not finite: the host drops the gradients,
// as the coordinator rejects or skips the step on the same numbers. Either way the host does not
// run the next step's start before it has decided (a start that arrives earlier waits).
//
// Fail-stop: a host decides only when every gradient and every loss of the step is there, so every
// task of the step that feeds them ran without error (a task that throws leaves a gradient or a loss
// missing everywhere). Hence the plans this applies to have no input gradients in `wrt` (a task
// feeding only those could fail after the hosts decided). What can still fail a step after a host
// decided is a refused envelope or a lost message: the coordinator asks each host, as it resets
// them, whether it applied the failed step's update, and breaks the runtime when one did (its
// parameters no longer match the step's rejection). A failed update breaks the runtime, as a
// deferred one does.

/**
 * One host's side of Note [local update]: the step's rule, the losses of every shard and the sums
 * of squares of every parameter, and the decision once they are all there.
 */
export class LocalUpdate {
  /** The step's rule, when this host applies the step's update itself. */
  rule: LocalUpdateRule | null = null;
  private losses = new Float64Array(0);
  private known = new Uint8Array(0);
  private count = 0;
  private scales: number[] = [];
  private microbatches = 1;
  private readonly sums = new Map<number, number>();
  private decided = false;

  /** Starts a step: `start.update` is its rule (absent: the coordinator's update, or none). */
  start(start: StepStart | null, replicas: number): void {
    this.rule = start?.update ?? null;
    this.sums.clear();
    this.decided = false;
    this.count = 0;
    if (start === null || this.rule === null) return;
    const m = start.microbatches;
    this.microbatches = m;
    this.losses = new Float64Array(replicas * m);
    this.known = new Uint8Array(replicas * m);
    this.scales = new Array<number>(replicas * m).fill(0);
    for (const s of start.shards) this.scales[s.replica * m + s.mb] = s.scale;
  }

  /** A shard's loss, this host's or another's; false when it was already known (a duplicate). */
  loss(replica: number, mb: number, value: number): boolean {
    const k = replica * this.microbatches + mb;
    if (this.rule === null || k >= this.known.length || this.known[k] === 1) return false;
    this.known[k] = 1;
    this.losses[k] = value;
    this.count++;
    return true;
  }

  /** A parameter's whole gradient is here, with this sum of squares. */
  sum(node: number, sumsq: number): void {
    this.sums.set(node, sumsq);
  }

  /** Whether the step's update is this host's to decide and every loss and each of `params` sums is in. */
  complete(params: number): boolean {
    return (
      this.rule !== null && !this.decided && this.count === this.known.length && this.sums.size === params
    );
  }

  /**
   * Decides the step (once): the clipping factor of its update, or null when its loss or global norm
   * is not finite (no update). The same numbers, in the same order, as the coordinator's stepResult.
   */
  decide(nameOf: (id: number) => string): number | null {
    this.decided = true;
    const m = this.microbatches;
    let loss = 0;
    for (let r = 0; r < this.losses.length / m; r++) {
      let lossR = 0;
      for (let mb = 0; mb < m; mb++) lossR += this.losses[r * m + mb]! * this.scales[r * m + mb]!;
      loss += lossR;
    }
    const sums = dict<number>();
    for (const [id, sumsq] of this.sums) sums[nameOf(id)] = sumsq;
    const norm = globalNormOf(sums);
    if (!Number.isFinite(norm) || !Number.isFinite(loss)) return null;
    return clipScale(norm, this.rule!.clipNorm);
  }
}
