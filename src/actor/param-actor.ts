import { sumCanonical } from '../autodiff/backprop.ts';
import type { Ops } from '../ops/ops.ts';
import type { Contribution } from './node-actor.ts';

// Note [gradient sum order]
// A parameter's gradient for a step is
//   sum over replicas r (in order) of  sum over microbatches m (in order) of  sum over consumer
//   edges (by consumer id, then slot) of the contributions of (r, m),
// each sum a left fold. The innermost sum is Note [canonical sum order]; the microbatch sum is what
// gradient accumulation does; the replica sum is the all-reduce of data parallelism. Contributions
// may arrive in any order: partial sums wait until the next one in order is there. The reference
// (src/runtime/reference.ts) computes the same nesting, which is why the two agree bit for bit.

/**
 * A parameter: holds its value, hands it to its consumers each step, and sums its gradient in the
 * order of Note [gradient sum order]. Its gradient context for the step closes when every replica's
 * every microbatch has delivered every owed contribution.
 */
export class ParamActor<T> {
  readonly node: number;
  value: T;
  private readonly expected: number;
  private microbatches = 0;
  private replicas = 0;
  private pending = new Map<number, Contribution<T>[]>();
  private perMicrobatch: Map<number, T>[] = [];
  private next: number[] = [];
  private partial: (T | undefined)[] = [];
  private replicasDone = 0;
  closed = false;

  constructor(node: number, value: T, expected: number) {
    this.node = node;
    this.value = value;
    this.expected = expected;
  }

  start(microbatches: number, replicas: number): void {
    this.microbatches = microbatches;
    this.replicas = replicas;
    this.pending.clear();
    this.perMicrobatch = Array.from({ length: replicas }, () => new Map());
    this.next = new Array(replicas).fill(0);
    this.partial = new Array(replicas).fill(undefined);
    this.replicasDone = 0;
    this.closed = this.expected === 0;
  }

  /** Adds one contribution; returns the step's gradient when this one closes the context. */
  receive(ops: Ops<T>, replica: number, mb: number, c: Contribution<T>): T | null {
    const key = replica * this.microbatches + mb;
    let list = this.pending.get(key);
    if (list === undefined) this.pending.set(key, (list = []));
    list.push(c);
    if (list.length < this.expected) return null;
    this.pending.delete(key);
    this.perMicrobatch[replica]!.set(mb, sumCanonical(ops, list));
    const waiting = this.perMicrobatch[replica]!;
    while (waiting.has(this.next[replica]!)) {
      const s = waiting.get(this.next[replica]!) as T;
      waiting.delete(this.next[replica]!);
      const p = this.partial[replica];
      this.partial[replica] = p === undefined ? s : ops.add(p, s);
      this.next[replica]!++;
    }
    if (this.next[replica] !== this.microbatches) return null;
    if (++this.replicasDone < this.replicas) return null;
    let total = this.partial[0] as T;
    for (let r = 1; r < this.replicas; r++) total = ops.add(total, this.partial[r] as T);
    this.closed = true;
    return total;
  }

  /** Owed contributions not yet received, as (replica, microbatch, have) for error reports. */
  missing(): { replica: number; mb: number; have: number; need: number }[] {
    const out: { replica: number; mb: number; have: number; need: number }[] = [];
    if (this.closed) return out;
    for (let r = 0; r < this.replicas; r++) {
      for (let mb = this.next[r]!; mb < this.microbatches; mb++) {
        if (this.perMicrobatch[r]!.has(mb)) continue;
        const have = this.pending.get(r * this.microbatches + mb)?.length ?? 0;
        out.push({ replica: r, mb, have, need: this.expected });
      }
    }
    return out;
  }

  reset(): void {
    this.pending.clear();
    this.perMicrobatch = [];
    this.partial = [];
  }
}
