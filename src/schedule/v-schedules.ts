import { type Action, action, type OverlappedAction, overlap } from './action.ts';
import type { CheckedConfig } from './config.ts';

/**
 * The V schedules: two chunks per worker placed in a V (Note [stage placement], 'v'), so worker w
 * holds stage w (going out) and stage 2p-1-w (coming back), and the first and last stages sit
 * together on worker 0. Both orders are PyTorch's (ScheduleZBVZeroBubble, ScheduleDualPipeV), written
 * as phases of a worker's list. A `Lane` counts, per chunk, the forwards, backwards and weight
 * gradients emitted so far, so each phase only says what comes next.
 */
class Lane {
  private readonly next = { F: [0, 0], I: [0, 0], W: [0, 0] };
  /** W's owed for I's already emitted, oldest first (DualPipeV drains them in this order). */
  private readonly owed: Action[] = [];
  readonly list: (Action | OverlappedAction)[] = [];

  constructor(
    private readonly stages: readonly [number, number],
    private readonly microbatches: number,
  ) {}

  /** The next action of `kind` on chunk `c` (0 out, 1 back); B counts as the chunk's I and W. */
  take(kind: 'F' | 'B' | 'I' | 'W', c: 0 | 1): Action {
    const counter = kind === 'B' ? 'I' : kind;
    const a = action(kind, this.stages[c], this.next[counter][c]!++);
    if (kind === 'B') this.next.W[c]!++;
    if (kind === 'I') this.owed.push(action('W', a.stage, a.microbatch));
    return a;
  }

  /** Emits the next action of `kind` on chunk `c`, unless its microbatch is past the last one. */
  push(kind: 'F' | 'B' | 'I' | 'W', c: 0 | 1): void {
    const a = this.take(kind, c);
    if (a.microbatch < this.microbatches) this.list.push(a);
  }

  /** The forward of chunk `f` and the full backward of chunk `b`, as one overlapped pair. */
  pushPair(f: 0 | 1, b: 0 | 1): void {
    this.list.push(overlap(this.take('F', f), this.take('B', b)));
  }

  /** Emits the oldest owed W, if any. */
  pushOwed(): void {
    const w = this.owed.shift();
    if (w) this.list.push(w);
  }

  count(kind: 'F' | 'I' | 'W', c: 0 | 1): number {
    return this.next[kind][c]!;
  }
}

const repeat = (n: number, f: () => void) => {
  for (let i = 0; i < n; i++) f();
};

/**
 * ZB-V (Qi et al. 2023, section 6), PyTorch's order. Worker w: 2(p-w)-1 forwards of chunk 0; w pairs
 * (F of chunk 1, F of chunk 0); p-w rounds of F, I, W on chunk 1 (the turn of the V is on worker p-1,
 * so the first backward starts right away there); then the steady phase, F I W on chunk 0 and F I W
 * on chunk 1, until every forward ran; then the drain, where I's go first and the W's fill in behind.
 * It plans for n = max(m, 2p-1) microbatches, the fewest that fill the V, and drops the actions of
 * microbatches past the last: any m >= 1 works. With F = I = W per chunk, the steady phase has no
 * bubble; what is left is the fill and the drain (Note [closed-form costs], bubble.ts).
 */
export function zbVOrder({ workers: p, microbatches: m }: CheckedConfig): (Action | OverlappedAction)[][] {
  const n = Math.max(m, 2 * p - 1);
  return Array.from({ length: p }, (_, w) => {
    const lane = new Lane([w, 2 * p - 1 - w], m);
    repeat(2 * (p - w) - 1, () => lane.push('F', 0));
    repeat(w, () => {
      lane.push('F', 1);
      lane.push('F', 0);
    });
    repeat(p - w, () => {
      lane.push('F', 1);
      lane.push('I', 1);
      lane.push('W', 1);
    });
    while (lane.count('F', 1) < lane.count('F', 0) || lane.count('F', 0) < n) {
      if (lane.count('F', 0) < n) lane.push('F', 0);
      for (const c of [0, 1] as const) {
        if (c === 1) lane.push('F', 1);
        lane.push('I', c);
        lane.push('W', c);
      }
    }
    repeat(w, () => {
      lane.push('I', 0);
      lane.push('I', 1);
    });
    repeat(p - w, () => {
      lane.push('I', 0);
      lane.push('W', 0);
    });
    while (lane.count('W', 1) < lane.count('I', 1)) lane.push('W', 1);
    while (lane.count('W', 0) < lane.count('I', 0)) lane.push('W', 0);
    return lane.list;
  });
}

/**
 * DualPipeV (DeepSeek-V3 report, 2024; its V form as PyTorch builds it). Worker w, chunk 0 going out
 * and chunk 1 coming back:
 *   1. 2(p-1-w) forwards of chunk 0;
 *   2. w+1 pairs of forwards, chunk 0 then chunk 1;
 *   3. p-1-w rounds of I, W, F on chunk 1 (zero bubble while the V fills);
 *   4. the main phase, m-2p+w+1 rounds of two overlapped pairs (Note [overlapped F and B]): F of
 *      chunk 0 with B of chunk 1, then F of chunk 1 with B of chunk 0 (on worker p-1 the very first
 *      one runs as F then B, unpaired, which starts the backward a step earlier);
 *   5. p-1-w rounds of B of chunk 1, then F of chunk 1 paired with B of chunk 0;
 *   6. w+1 rounds of backwards of chunk 1 and chunk 0, switching to split I's half way through;
 *   7. p-1-w rounds of an owed W, then a backward of chunk 0 (split);
 *   8. the last w+1 owed W's.
 * Needs m >= 2p (checkPipelineConfig). Backwards are full B's except where a W can fill a gap.
 */
export function dualPipeVOrder({
  workers: p,
  microbatches: m,
}: CheckedConfig): (Action | OverlappedAction)[][] {
  return Array.from({ length: p }, (_, w) => {
    const lane = new Lane([w, 2 * p - 1 - w], m);
    repeat(2 * (p - 1 - w), () => lane.push('F', 0));
    repeat(w + 1, () => {
      lane.push('F', 0);
      lane.push('F', 1);
    });
    repeat(p - 1 - w, () => {
      lane.push('I', 1);
      lane.pushOwed();
      lane.push('F', 1);
    });
    for (let i = 0; i < m - 2 * p + w + 1; i++) {
      if (i === 0 && w === p - 1) {
        lane.push('F', 0);
        lane.push('B', 1);
      } else lane.pushPair(0, 1);
      lane.pushPair(1, 0);
    }
    repeat(p - 1 - w, () => {
      lane.push('B', 1);
      lane.pushPair(1, 0);
    });
    // Half way through step 6 the backwards split, chunk 1 first on odd workers, chunk 0 on even ones.
    let split = false;
    for (let i = 0; i < w + 1; i++) {
      const half = i === Math.floor((w + 1) / 2);
      if (half && w % 2 === 1) split = true;
      lane.push(split ? 'I' : 'B', 1);
      if (half && w % 2 === 0) split = true;
      lane.push(split ? 'I' : 'B', 0);
    }
    repeat(p - 1 - w, () => {
      lane.pushOwed();
      lane.push(split ? 'I' : 'B', 0);
    });
    repeat(w + 1, () => lane.pushOwed());
    return lane.list;
  });
}
