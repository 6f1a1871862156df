import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
import { actionsOf, type Schedule } from '../../src/schedule/action.ts';
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

  it("ZB-H1: bubble (p-1)/(3m) with F = I = W, below 1F1B; 1F1B's peak on worker 0, p on every worker", () => {
    for (const p of P)
      for (const m of M) {
        if (m < p) continue;
        const zb = bubbleStats(generateSchedule('zb-h1', { workers: p, microbatches: m }));
        const oneF1B = bubbleStats(generateSchedule('1f1b', { workers: p, microbatches: m }));
        expect(zb.bubble).toBe((p - 1) / (3 * m));
        expect(zb.bubble).toBeLessThan(oneF1B.bubble);
        expect(zb.ideal).toBe(oneF1B.ideal);
        expect(Math.max(...zb.peakInFlight)).toBe(Math.max(...oneF1B.peakInFlight));
        // Worker s holds s more than 1F1B's p-s: microbatches whose deferred W has not run.
        expect(zb.peakInFlight).toEqual(new Array(p).fill(p));
      }
  });
});

describe('closed forms of the schedules after 1F1B and ZB-H1', () => {
  /** Per worker, the most chunk activations held at once (F done, its B or W not yet). */
  const peakPerWorker = (schedule: Schedule) =>
    schedule.map((list) => {
      let [held, peak] = [0, 0];
      for (const a of list.flatMap(actionsOf))
        if (a.kind === 'F') peak = Math.max(peak, ++held);
        else if (a.kind === 'B' || a.kind === 'W') held--;
      return peak;
    });

  it.each(COSTS)(
    'interleaved 1F1B and looped BFS, any m they accept: makespan (vm + p-1 + (v-1) max(0, p-m))(F+B) (F=$costF, B=$costB)',
    (costs) => {
      for (const p of P)
        for (let m = 1; m <= 3 * p; m++)
          for (const v of [2, 3]) {
            const late = (v - 1) * Math.max(0, p - m);
            const looped = bubbleStats(
              generateSchedule('looped-bfs', { workers: p, microbatches: m, chunks: v }),
              costs,
            );
            expect(looped.makespan).toBe((v * m + p - 1 + late) * (costs.costF + costs.costB));
            expect(looped.peakInFlight).toEqual(new Array(p * v).fill(m));
            if (m % Math.max(1, Math.floor(m / p)) !== 0) continue; // interleaved's rule
            const config = { workers: p, microbatches: m, chunks: v };
            const stats = bubbleStats(generateSchedule('interleaved-1f1b', config), costs);
            expect(stats.makespan).toBe((v * m + p - 1 + late) * (costs.costF + costs.costB));
            if (m >= p) expect(stats.bubble).toBe((p - 1) / (v * m));
          }
    },
  );

  it('interleaved zero bubble, m >= p: makespan 3vm + p-1 with F = I = W, bubble (p-1)/(3vm), a third of interleaved 1F1B', () => {
    for (const p of P)
      for (let m = p; m <= 3 * p; m++)
        for (const v of [2, 3]) {
          if (m % Math.floor(m / p) !== 0) continue;
          const config = { workers: p, microbatches: m, chunks: v };
          const zb = bubbleStats(generateSchedule('interleaved-zb', config));
          expect(zb.makespan).toBe(3 * v * m + p - 1);
          expect(zb.bubble).toBe((p - 1) / (3 * v * m));
          const interleaved = bubbleStats(generateSchedule('interleaved-1f1b', config), {
            costF: 1,
            costB: 2,
          });
          expect(interleaved.ideal).toBe(zb.ideal);
          expect(interleaved.makespan - interleaved.ideal).toBe(3 * (zb.makespan - zb.ideal));
        }
  });

  it('ZB-V, m >= 2p: makespan 6m + p-1 with F = I = W per chunk (no bubble but the fill), 2p chunk activations on every worker', () => {
    for (const p of P)
      for (const m of [2 * p, 2 * p + 1, 3 * p, 4 * p]) {
        const schedule = generateSchedule('zb-v', { workers: p, microbatches: m });
        const stats = bubbleStats(schedule);
        expect(stats.makespan).toBe(6 * m + p - 1);
        expect(stats.ideal).toBe(6 * m);
        expect(stats.bubble).toBe((p - 1) / (6 * m));
        // The activations of p whole stages, the peak of 1F1B's worker 0, on every worker.
        expect(peakPerWorker(schedule)).toEqual(new Array(p).fill(2 * p));
        // Half of ZB-H1's bubble over the same model (a chunk is half a stage).
        const zbH1 = bubbleStats(generateSchedule('zb-h1', { workers: p, microbatches: m }));
        expect(stats.bubble).toBe(zbH1.bubble / 2);
      }
  });

  it("DualPipeV, m >= 2p, pairs launched whole: makespan 6m + 2(p-1), DeepSeek's (p-1)(F&B + B - 3W), 2p+1 activations", () => {
    for (const p of P)
      for (const m of [2 * p, 2 * p + 1, 3 * p, 4 * p]) {
        const schedule = generateSchedule('dualpipe-v', { workers: p, microbatches: m });
        const stats = bubbleStats(schedule);
        // F = I = W = 1, B = I + W = 2, and a pair costs both halves: F&B = F + B = 3.
        const [F, B, W] = [1, 2, 1];
        expect(stats.makespan - stats.ideal).toBe((p - 1) * (F + B + B - 3 * W));
        expect(stats.ideal).toBe(6 * m);
        expect(peakPerWorker(schedule)).toEqual(new Array(p).fill(2 * p + 1));
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
        // The dry run's idle fraction where pairs are not involved (ZB-V with the default 2 chunks).
        for (const [kind, chunks] of [
          ['looped-bfs', 3],
          ['interleaved-zb', 2],
        ] as const) {
          const stats = bubbleStats(generateSchedule(kind, { workers: p, microbatches: m, chunks }));
          if (kind === 'looped-bfs' || m % p === 0)
            expect(closedFormIdleFraction(kind, p, m, chunks)).toBeCloseTo(stats.idleFraction, 12);
        }
        if (m >= 2 * p)
          expect(closedFormIdleFraction('zb-v', p, m)).toBeCloseTo(
            bubbleStats(generateSchedule('zb-v', { workers: p, microbatches: m })).idleFraction,
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

  it('gives the same numbers with explicit communication (it is free), overlapped pairs included', () => {
    for (const kind of ['gpipe', '1f1b', 'zb-h1', 'zb-v', 'dualpipe-v'] as const) {
      const schedule = generateSchedule(kind, { workers: 4, microbatches: 8 });
      expect(bubbleStats(insertCommunication(schedule))).toEqual(bubbleStats(schedule));
    }
  });

  it('refuses an invalid schedule with the validator error', () => {
    expect(() => bubbleStats(grid('0B0 0F0'))).toThrow(ScheduleError);
    expect(() => bubbleStats(grid('0B0 0F0'))).toThrow(/rule "F before B"/);
  });
});
