/**
 * The pipeline simulator: one step of 1F1B on the smallest model with p stages (`stageChain`), equal
 * stage costs (forward 1, backward 2) and free communication, driven by the runtime's own host logic.
 * The target: 256 stages x 4,096 microbatches in at most 10 s of wall time. Every run checks the
 * makespan against the closed form (m + p - 1) * 3, so a faster simulator that changed a result fails
 * here rather than reporting a figure.
 *
 * Figures: `wall_ms` (the median), `actions` (host tasks run in the step), `actions_per_s` (at the
 * median), `target_ms` and `meets_target` for the cases that have a target.
 */
import { simulatePipeline } from '../../../src/sim/pipeline.ts';
import { round, type Suite } from '../harness.ts';

interface SimCase {
  workers: number;
  microbatches: number;
  runs: number;
  warmup: number;
  /** Keep warming up for this long too (the small case takes milliseconds: the JIT needs many). */
  warmupMs: number;
  targetMs?: number;
}

const CASES: readonly SimCase[] = [
  { workers: 16, microbatches: 256, runs: 20, warmup: 3, warmupMs: 300 },
  // A run takes seconds: the JIT has long tiered up by its end, so no untimed warm-up run.
  { workers: 256, microbatches: 4096, runs: 3, warmup: 0, warmupMs: 0, targetMs: 10_000 },
];

/** Simulates one step and returns the number of actions; throws when the makespan is not the closed form. */
function simulateOnce(p: number, m: number): number {
  const r = simulatePipeline({
    schedule: '1f1b',
    workers: p,
    microbatches: m,
    costs: { forward: 1, backward: 2 },
    record: false,
  });
  const expected = (m + p - 1) * 3;
  if (r.makespan !== expected) {
    throw new Error(
      `sim bench: 1F1B p=${p} m=${m} took ${r.makespan}, the closed form (m + p - 1) * 3 is ${expected}`,
    );
  }
  return r.actions;
}

export const simSuite: Suite = {
  takesRuns: true,
  name: 'sim',
  description: 'wall time of the pipeline simulator: one 1F1B step, 16x256 and 256x4096 (target <= 10 s)',
  flags: { quick: 'only the small case' },
  async run(ctx) {
    for (const c of CASES) {
      if (c.targetMs !== undefined && ctx.flags.has('quick')) continue;
      let actions = 0;
      await ctx.measure(
        `1f1b-${c.workers}x${c.microbatches}`,
        () => {
          actions = simulateOnce(c.workers, c.microbatches);
        },
        {
          runs: c.runs,
          warmup: c.warmup,
          warmupMs: c.warmupMs,
          extra: (s) => ({
            wall_ms: round(s.median),
            stages: c.workers,
            microbatches: c.microbatches,
            actions,
            actions_per_s: Math.round(actions / (s.median / 1000)),
            ...(c.targetMs === undefined
              ? {}
              : { target_ms: c.targetMs, meets_target: s.median <= c.targetMs }),
          }),
        },
      );
    }
  },
};
