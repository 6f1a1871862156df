// The dry run that gives a schedule's floor of credit windows (Note [activation credits]).
import { describe, expect, it } from 'vitest';
import { minCreditWindow } from '../../src/schedule/credits.ts';
import { scheduleFromCsv } from '../../src/schedule/csv.ts';
import { generatePlacedSchedule } from '../../src/schedule/generators.ts';
import { resolveStagePlacement } from '../../src/schedule/placement.ts';

/** Stage s sends to stage s + 1 when that one is on another worker. */
const chainWaits = (workerOfStage: readonly number[]) =>
  workerOfStage.map((w, s) => (s + 1 < workerOfStage.length && workerOfStage[s + 1] !== w ? [s + 1] : []));

describe('minCreditWindow', () => {
  it.each([
    ['gpipe', 4, 8, 1],
    ['1f1b', 4, 8, 1],
    ['zb-h1', 4, 8, 1],
    ['interleaved-1f1b', 4, 8, 2],
    ['interleaved-1f1b', 2, 4, 2],
    ['interleaved-1f1b', 3, 6, 3],
  ] as const)(
    '%s on %i workers, %i microbatches, %i chunks: one microbatch per channel is enough',
    (kind, p, m, v) => {
      const placed = generatePlacedSchedule(kind, { workers: p, microbatches: m, chunks: v });
      const workerOfStage = resolveStagePlacement(placed.stagePlacement, p * v, p);
      const shape = {
        workers: p,
        stages: p * v,
        microbatches: m,
        workerOfStage,
        explicitCommunication: true,
      };
      expect(minCreditWindow(placed.schedule, shape, chainWaits(workerOfStage))).toBe(1);
    },
  );

  // Stage 0 (worker 0) feeds stages 1 and 2 (both on worker 1, a skip connection): its microbatch is
  // consumed when both ran it, and worker 1 runs 2F0 only after 1F1, which needs 0F1.
  const rows = [
    '0F0,0F1,0F2,0F3,0B0,0B1,0B2,0B3',
    '1F0,1F1,2F0,1F2,2F1,1F3,2F2,2F3,2B0,1B0,2B1,1B1,2B2,1B2,2B3,1B3',
  ].join('\n');
  const shape = {
    workers: 2,
    stages: 3,
    microbatches: 4,
    workerOfStage: [0, 1, 1],
    explicitCommunication: false,
  };

  it('finds the window a skip connection over a V turn needs', () => {
    expect(minCreditWindow(scheduleFromCsv(rows), shape, [[1, 2], [], []])).toBe(2);
  });

  it('gives every microbatch (no limit) to a stage that runs its forwards out of order', () => {
    const swapped = rows.replace('0F0,0F1', '0F1,0F0');
    expect(minCreditWindow(scheduleFromCsv(swapped), shape, [[1, 2], [], []])).toBe(4);
  });
});
