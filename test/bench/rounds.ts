/**
 * Timing helpers for suites that compare a case with a baseline on this shared, noisy machine:
 * time both in alternating rounds and take the median of the per-round ratios, and build one result
 * line out of several measurements.
 */
import { type BenchContext, type BenchResult, type Figure, median, round } from './harness.ts';

/** Wall times of `runs` calls after `warmup` untimed ones. */
export async function time(fn: () => unknown, runs: number, warmup: number): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return samples;
}

/**
 * Rounds of one call of each function in turn, after `warmup` untimed rounds: one list of wall times
 * per function. On a shared machine a burst of load then hits every function alike.
 */
export async function alternate(
  fns: readonly (() => unknown)[],
  rounds: number,
  warmup: number,
): Promise<number[][]> {
  const samples = fns.map(() => [] as number[]);
  for (let r = 0; r < warmup + rounds; r++) {
    for (const [i, fn] of fns.entries()) {
      const t = performance.now();
      await fn();
      if (r >= warmup) samples[i]!.push(performance.now() - t);
    }
  }
  return samples;
}

/**
 * Blocks of `perBlock` calls of each function in turn, after `warmup` untimed rounds of one call
 * each: one list per function of its blocks' median wall times. For calls that share a thread and
 * its caches, where alternating call by call would time each with the other's data evicted (and
 * one's collector running in the other's call); a block's first call still pays that, its median
 * does not.
 */
export async function alternateBlocks(
  fns: readonly (() => unknown)[],
  blocks: number,
  perBlock: number,
  warmup: number,
): Promise<number[][]> {
  await alternate(fns, 0, warmup);
  const medians = fns.map(() => [] as number[]);
  for (let b = 0; b < blocks; b++) {
    for (const [i, fn] of fns.entries()) medians[i]!.push(median(await time(fn, perBlock, 0)));
  }
  return medians;
}

/** The median of the per-round ratios a[i] / b[i]: pairs timed back to back share their noise. */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, i) => x / b[i]!));
}

/** A result line from samples timed here (cases that combine several measurements into one line). */
export function resultOf(
  ctx: BenchContext,
  name: string,
  samples: readonly number[],
  figures: Record<string, Figure>,
): BenchResult {
  return {
    suite: ctx.suite,
    case: name,
    median_ms: round(median(samples)),
    min_ms: round(Math.min(...samples)),
    max_ms: round(Math.max(...samples)),
    runs: samples.length,
    ...figures,
  };
}
