import { sumCells } from '../autodiff/backprop.ts';
import type { Ops } from '../ops/ops.ts';

// Note [gradient sum order]
// A parameter's gradient for a step is
//   sum over replicas r (in order) of  sum over microbatches m (in order) of  sum over consumer
//   edges (by consumer id, then slot) of the contributions of (r, m),
// each sum a left fold. The innermost sum is Note [canonical sum order]; the microbatch sum is what
// gradient accumulation does; the replica sum is the all-reduce of data parallelism. Contributions
// may arrive in any order: partial sums wait until the next one in order is there. The reference
// (`referenceStep` in src/autodiff/microbatch.ts) computes the same nesting, which is why the two
// agree bit for bit.

/**
 * A parameter: holds its value, hands it to its consumers each step, and sums its gradient in the
 * order of Note [gradient sum order]. Its gradient context for the step closes when every replica's
 * every microbatch has delivered every owed contribution.
 *
 * Per-(replica, microbatch) tables are dense arrays indexed by replica * microbatches + mb, sized
 * when the step starts.
 */
export class ParamActor<T> {
  readonly node: number;
  value: T;
  /** Contributions owed per (replica, microbatch). */
  private readonly expected: number;
  private microbatches = 0;
  private replicas = 0;
  /** The cells of (replica, mb) still filling (Note [gradient cells]); only with more than one owed. */
  private cells: ((T | undefined)[] | undefined)[] = [];
  private received = new Int32Array(0);
  /** Sums of (replica, mb) that arrived before the microbatches ahead of them. */
  private waiting: (T | undefined)[] = [];
  /** Per replica: the next microbatch to fold in, and the fold so far. */
  private next = new Int32Array(0);
  private partial: (T | undefined)[] = [];
  private replicasDone = 0;
  closed = false;

  /**
   * `primary`: this is the copy that reports the gradient (or its sum of squares): the only one, or
   * replica 0's of a replicated parameter (Note [parameter placement] in src/partition/plan.ts).
   */
  constructor(
    node: number,
    value: T,
    expected: number,
    readonly primary = true,
  ) {
    this.node = node;
    this.value = value;
    this.expected = expected;
  }

  start(microbatches: number, replicas: number): void {
    this.microbatches = microbatches;
    this.replicas = replicas;
    const keys = replicas * microbatches;
    this.cells = this.expected > 1 ? new Array(keys) : [];
    this.received = new Int32Array(keys);
    this.waiting = new Array(keys);
    this.next = new Int32Array(replicas);
    this.partial = new Array(replicas).fill(undefined);
    this.replicasDone = 0;
    this.closed = this.expected === 0;
  }

  /** True when this contribution of (replica, mb) already arrived, or all of them did: a duplicate. */
  has(replica: number, mb: number, cell: number): boolean {
    const key = replica * this.microbatches + mb;
    return this.received[key]! >= this.expected || this.cells[key]?.[cell] !== undefined;
  }

  /**
   * Adds the contribution of cell `cell` (Note [gradient cells]) for (replica, mb); returns the
   * step's gradient when this one closes the context.
   */
  receive(ops: Ops<T>, replica: number, mb: number, cell: number, value: T): T | null {
    const key = replica * this.microbatches + mb;
    const have = ++this.received[key]!;
    let sum = value;
    if (this.expected > 1) {
      let cells = this.cells[key];
      if (cells === undefined)
        this.cells[key] = cells = new Array<T | undefined>(this.expected).fill(undefined);
      cells[cell] = value;
      if (have < this.expected) return null;
      this.cells[key] = undefined;
      sum = sumCells(ops, cells);
    }
    if (mb !== this.next[replica]) {
      this.waiting[key] = sum;
      return null;
    }
    // The microbatch fold, as far as the sums in order are there.
    let p = this.partial[replica];
    let m = mb;
    let s: T | undefined = sum;
    while (s !== undefined) {
      p = p === undefined ? s : ops.add(p, s);
      this.waiting[replica * this.microbatches + m] = undefined;
      m++;
      s = m < this.microbatches ? this.waiting[replica * this.microbatches + m] : undefined;
    }
    this.partial[replica] = p;
    this.next[replica] = m;
    if (m !== this.microbatches) return null;
    if (++this.replicasDone < this.replicas) return null;
    // Every replica's fold is there.
    let total: T = this.partial[0]!;
    for (let r = 1; r < this.replicas; r++) total = ops.add(total, this.partial[r]!);
    this.closed = true;
    return total;
  }

  /** Owed contributions not yet received, as (replica, microbatch, have) for error reports. */
  missing(): { replica: number; mb: number; have: number; need: number }[] {
    const out: { replica: number; mb: number; have: number; need: number }[] = [];
    if (this.closed) return out;
    for (let r = 0; r < this.replicas; r++) {
      for (let mb = this.next[r]!; mb < this.microbatches; mb++) {
        const key = r * this.microbatches + mb;
        if (this.waiting[key] !== undefined) continue;
        out.push({ replica: r, mb, have: this.received[key]!, need: this.expected });
      }
    }
    return out;
  }

  /** Calls `f` on every partial sum and contribution this actor holds (not its value). */
  held(f: (value: T | undefined) => void): void {
    for (const cells of this.cells) if (cells !== undefined) for (const v of cells) f(v);
    for (const v of this.waiting) f(v);
    for (const v of this.partial) f(v);
  }

  reset(): void {
    this.cells = [];
    this.waiting = [];
    this.partial = [];
  }
}
