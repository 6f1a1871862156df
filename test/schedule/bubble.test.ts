import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
import { bubbleStats, closedFormIdleFraction } from '../../src/schedule/bubble.ts';
import { insertCommunication } from '../../src/schedule/communication.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { grid } from '../support/schedules.ts';

// The closed forms of Note [closed-form costs] (src/schedule/bubble.ts), reproduced exactly by the dry run.
// Integer costs make every ratio one correctly rounded division, so `toBe` is exact.

const P = [2, 4, 8];
const M = [4, 8, 16, 32];
/** Forward and backward costs per stage: equal, the usual B = 2F, and an odd ratio. */
const COSTS = [
  { costF: 1, costB: 1 },
  { costF: 1, costB: 2 },
  { costF: 3, costB: 5 },
];

describe('closed forms, p in {2, 4, 8}, m in {4, 8, 16, 32}', () => {
  it.each(COSTS)('GPipe: idle fraction (p-1)/(m+p-1), peak in flight m (F=$costF, B=$costB)', (costs) => {
    for (const p of P)
      for (const m of M) {
        const stats = bubbleStats(generateSchedule('gpipe', { workers: p, microbatches: m }), costs);
        expect(stats.idleFraction).toBe((p - 1) / (m + p - 1));
        expect(stats.bubble).toBe((p - 1) / m);
        expect(stats.makespan).toBe((m + p - 1) * (costs.costF + costs.costB));
        expect(stats.peakInFlight).toEqual(new Array(p).fill(m));
      }
  });

  it.each(COSTS)('1F1B: idle fraction (p-1)/(m+p-1), peak in flight p-s (F=$costF, B=$costB)', (costs) => {
    for (const p of P)
      for (const m of M) {
        if (m < p) continue; // 1F1B's rule; the configuration test covers the error
        const stats = bubbleStats(generateSchedule('1f1b', { workers: p, microbatches: m }), costs);
        expect(stats.idleFraction).toBe((p - 1) / (m + p - 1));
        expect(stats.bubble).toBe((p - 1) / m);
        expect(stats.peakInFlight).toEqual(Array.from({ length: p }, (_, s) => p - s));
      }
  });

  it.each(COSTS)('interleaved 1F1B: bubble (p-1)/(v m) of ideal (F=$costF, B=$costB per chunk)', (costs) => {
    for (const p of P)
      for (const m of M)
        for (const v of [2, 3, 4]) {
          if (m % p !== 0) continue; // interleaved's rule
          const schedule = generateSchedule('interleaved-1f1b', { workers: p, microbatches: m, chunks: v });
          const stats = bubbleStats(schedule, costs);
          expect(stats.bubble).toBe((p - 1) / (v * m));
          expect(stats.idleFraction).toBe((p - 1) / (v * m + p - 1));
          expect(stats.ideal).toBe(v * m * (costs.costF + costs.costB));
        }
  });

  it('interleaving shrinks the bubble by v against 1F1B', () => {
    const oneF1B = bubbleStats(generateSchedule('1f1b', { workers: 4, microbatches: 8 }));
    const interleaved = bubbleStats(
      generateSchedule('interleaved-1f1b', { workers: 4, microbatches: 8, chunks: 2 }),
    );
    expect(interleaved.bubble).toBe(oneF1B.bubble / 2);
  });

  it('ZB-H1: bubble (p-1)/(3m) with F = I = W, below 1F1B, at 1F1B peak memory', () => {
    for (const p of P)
      for (const m of M) {
        if (m < p) continue;
        const zb = bubbleStats(generateSchedule('zb-h1', { workers: p, microbatches: m }));
        const oneF1B = bubbleStats(generateSchedule('1f1b', { workers: p, microbatches: m }));
        expect(zb.bubble).toBe((p - 1) / (3 * m));
        expect(zb.bubble).toBeLessThan(oneF1B.bubble);
        expect(zb.ideal).toBe(oneF1B.ideal);
        expect(Math.max(...zb.peakInFlight)).toBe(Math.max(...oneF1B.peakInFlight));
      }
  });
});

describe('closedFormIdleFraction', () => {
  it('is the dry run idle fraction for GPipe and 1F1B, and r / (1 + r) of the bubble otherwise', () => {
    for (const p of P)
      for (const m of M) {
        if (m < p) continue;
        for (const kind of ['gpipe', '1f1b'] as const) {
          const stats = bubbleStats(generateSchedule(kind, { workers: p, microbatches: m }));
          expect(closedFormIdleFraction(kind, p, m)).toBeCloseTo(stats.idleFraction, 12);
        }
        const zb = (p - 1) / (3 * m);
        expect(closedFormIdleFraction('zb-h1', p, m)).toBeCloseTo(zb / (1 + zb), 12);
        const interleaved = (p - 1) / (2 * m);
        expect(closedFormIdleFraction('interleaved-1f1b', p, m, 2)).toBeCloseTo(
          interleaved / (1 + interleaved),
          12,
        );
      }
  });
});

describe('bubbleStats', () => {
  it('measures a hand-written schedule', () => {
    // Unit F, B = 2: worker 1 waits for 0F0, worker 0 waits for 1B0.
    const stats = bubbleStats(grid('0F0 0B0|1F0 1B0'));
    expect(stats).toEqual({
      makespan: 6,
      busy: [3, 3],
      ideal: 3,
      idleFraction: 0.5,
      bubble: 1,
      peakInFlight: [1, 1],
      workerPeakInFlight: [1, 1],
    });
  });

  it('takes per-stage costs, and the slowest stage sets the pace', () => {
    const schedule = generateSchedule('1f1b', { workers: 2, microbatches: 4 });
    const stats = bubbleStats(schedule, { costF: [1, 2], costB: [2, 4] });
    expect(stats.busy).toEqual([12, 24]);
    expect(stats.makespan).toBe(1 + 24 + 2);
  });

  it('gives the same numbers with explicit communication (it is free)', () => {
    for (const kind of ['gpipe', '1f1b', 'zb-h1'] as const) {
      const schedule = generateSchedule(kind, { workers: 4, microbatches: 8 });
      expect(bubbleStats(insertCommunication(schedule))).toEqual(bubbleStats(schedule));
    }
  });

  it('refuses an invalid schedule with the validator error', () => {
    expect(() => bubbleStats(grid('0B0 0F0'))).toThrow(ScheduleError);
    expect(() => bubbleStats(grid('0B0 0F0'))).toThrow(/rule "F before B"/);
  });
});
