import type { HostStats } from '../actor/host.ts';
import type { History } from './trainer.ts';

/** Training throughput over the epochs' training time (evaluation excluded), and the last test accuracy. */
export function trainingSummary(history: History): {
  /** Training examples per second over every epoch's steps. */
  samplesPerSec: number;
  /** Seconds of training steps in all. */
  trainSeconds: number;
  /** The last epoch's evaluation accuracy, or null. */
  accuracy: number | null;
} {
  const samples = history.epochs.reduce((s, e) => s + e.samplesPerSec * e.seconds, 0);
  const trainSeconds = history.epochs.reduce((s, e) => s + e.seconds, 0);
  const last = history.epochs.at(-1);
  return {
    samplesPerSec: trainSeconds > 0 ? samples / trainSeconds : 0,
    trainSeconds,
    accuracy: last?.evalAccuracy ?? null,
  };
}

/**
 * Tensor bytes per worker, a line each: what it holds between steps (parameters, optimizer state,
 * its storage pool), the peak it kept for backwards, and what its last step moved.
 */
export function workerBytesLines(stats: readonly HostStats[]): string[] {
  const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
  return stats.map((s, w) => {
    const hitRate = ((100 * s.poolHits) / Math.max(1, s.poolHits + s.poolMisses)).toFixed(1);
    return (
      `worker ${w}: parameters ${kib(s.paramBytes)}, optimizer state ${kib(s.optimizerBytes)}, ` +
      `kept for backward at peak ${kib(s.peakKeptBytes)}, pool ${kib(s.pooledBytes)} (${hitRate}% of allocations reused), ` +
      `last step sent ${kib(s.sentBytes)} and received ${kib(s.receivedBytes)}`
    );
  });
}
