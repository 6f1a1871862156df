import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { compile } from '../../src/partition/plan.ts';
import type { Slot } from '../../src/schedule/action.ts';
import { bubbleStats } from '../../src/schedule/bubble.ts';
import { SCHEDULE_KINDS, type ScheduleKind } from '../../src/schedule/config.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { flopCosts } from '../../src/sim/cost.ts';
import { simulatePipeline } from '../../src/sim/pipeline.ts';
import { simulate } from '../../src/sim/simulate.ts';
import { V2x4 } from '../support/schedules.ts';

// The closed forms of Note [closed-form costs] (src/schedule), reproduced by the runtime's own host
// logic under the simulator's virtual clock: equal stage costs, free communication.
describe('simulator: closed forms', () => {
  for (const p of [2, 4, 8]) {
    for (const m of [4, 8, 16, 32]) {
      it(`GPipe and 1F1B, p=${p}, m=${m}: idle fraction (p-1)/(m+p-1)`, () => {
        // 1F1B needs m >= p (its rules refuse the rest before anything runs).
        for (const schedule of m >= p ? (['gpipe', '1f1b'] as const) : (['gpipe'] as const)) {
          const r = simulatePipeline({
            schedule,
            workers: p,
            microbatches: m,
            costs: { forward: 1, backward: 2 },
          });
          expect(r.makespan).toBe((m + p - 1) * 3);
          expect(r.idleFraction).toBeCloseTo((p - 1) / (m + p - 1), 12);
          expect(r.bubbleVsIdeal).toBeCloseTo((p - 1) / m, 12);
          // One stage per worker: worker w holds m microbatches at peak under GPipe, p - w under 1F1B.
          const held = Array.from({ length: p }, (_, w) => (schedule === 'gpipe' ? m : p - w));
          expect(r.peakInFlight).toEqual(held);
        }
      });

      it(`interleaved 1F1B, p=${p}, m=${m}, v=2: bubble (p-1)/(v*m) relative to ideal`, () => {
        if (m % p !== 0) return;
        const r = simulatePipeline({
          schedule: 'interleaved-1f1b',
          workers: p,
          microbatches: m,
          chunks: 2,
          costs: { forward: 1, backward: 2 },
        });
        expect(r.bubbleVsIdeal).toBeCloseTo((p - 1) / (2 * m), 12);
      });

      it(`ZB-H1, p=${p}, m=${m}: a smaller bubble than 1F1B`, () => {
        if (m < p) return;
        const zb = simulatePipeline({
          schedule: 'zb-h1',
          workers: p,
          microbatches: m,
          costs: { forward: 1, backward: 2, input: 1, weight: 1 },
        });
        const ofob = simulatePipeline({
          schedule: '1f1b',
          workers: p,
          microbatches: m,
          costs: { forward: 1, backward: 2 },
        });
        expect(zb.bubbleVsIdeal).toBeCloseTo((p - 1) / (3 * m), 12);
        expect(zb.bubbleVsIdeal).toBeLessThan(ofob.bubbleVsIdeal);
      });
    }
  }

  it('fewer cores than workers stretch the step', () => {
    const free = simulatePipeline({
      schedule: 'gpipe',
      workers: 4,
      microbatches: 8,
      costs: { forward: 1, backward: 2 },
    });
    const two = simulatePipeline({
      schedule: 'gpipe',
      workers: 4,
      microbatches: 8,
      costs: { forward: 1, backward: 2 },
      cores: 2,
    });
    expect(two.makespan).toBeGreaterThan(free.makespan);
    // Two cores can do at most two units of work per unit of time.
    expect(two.makespan).toBeGreaterThanOrEqual((4 * 8 * 3) / 2);
  });

  it('communication delays add to the step', () => {
    const r = simulatePipeline({
      schedule: '1f1b',
      workers: 4,
      microbatches: 8,
      costs: { forward: 1, backward: 2, latencyMs: 0.5 },
    });
    expect(r.makespan).toBeGreaterThan(33);
    expect(r.trace.flows.length).toBeGreaterThan(0);
  });
});

// The schedules PyTorch has beyond 1F1B and ZB-H1, under the runtime's host logic with unit costs
// (F = I = W = 1 per stage, B = 2): Note [closed-form costs] in src/schedule/bubble.ts.
describe('simulator: closed forms of interleaved, looped and V schedules', () => {
  const unit = { forward: 1, backward: 2, input: 1, weight: 1 };
  const sim = (schedule: ScheduleKind, workers: number, microbatches: number, chunks: number) =>
    simulatePipeline({ schedule, workers, microbatches, chunks, costs: unit });

  for (const p of [2, 4, 8]) {
    it(`looped BFS and interleaved 1F1B, p=${p}, v=2, m from below p to past 2p: (vm + p-1 + (v-1) max(0, p-m)) (F+B)`, () => {
      for (const m of [p - 1, p, p + 2, 2 * p + 1, 2 * p + 2, 4 * p]) {
        if (m < 1) continue;
        const late = Math.max(0, p - m);
        expect(sim('looped-bfs', p, m, 2).makespan).toBe((2 * m + p - 1 + late) * 3);
        if (m % Math.max(1, Math.floor(m / p)) !== 0) continue; // PyTorch's rounds
        const r = sim('interleaved-1f1b', p, m, 2);
        expect(r.makespan).toBe((2 * m + p - 1 + late) * 3);
        if (m >= p) expect(r.bubbleVsIdeal).toBeCloseTo((p - 1) / (2 * m), 12);
      }
    });

    it(`interleaved zero bubble, p=${p}, v=2: makespan 3vm + p-1, bubble (p-1)/(3vm)`, () => {
      for (const m of [p, 2 * p, 4 * p]) {
        const r = sim('interleaved-zb', p, m, 2);
        expect(r.makespan).toBe(6 * m + p - 1);
        expect(r.bubbleVsIdeal).toBeCloseTo((p - 1) / (6 * m), 12);
      }
    });

    it(`ZB-V and DualPipeV, p=${p}: makespan 6m + p-1 (V fill only); DualPipeV's dry run launches pairs whole, 6m + 2(p-1)`, () => {
      for (const m of [2 * p, 3 * p, 4 * p]) {
        const zbv = sim('zb-v', p, m, 2);
        expect(zbv.makespan).toBe(6 * m + p - 1);
        expect(zbv.bubbleVsIdeal).toBeCloseTo((p - 1) / (6 * m), 12);
        // The host runs a pair's halves back to back, each when its inputs are there.
        const dual = sim('dualpipe-v', p, m, 2);
        expect(dual.makespan).toBe(6 * m + p - 1);
        const dry = bubbleStats(generateSchedule('dualpipe-v', { workers: p, microbatches: m }));
        expect(dry.makespan).toBe(6 * m + 2 * (p - 1));
        // Every activation crosses to the next stage's worker but at the turn of the V (stage p-1 -> p).
        const activations = dual.trace.flows.filter((f) => f.kind === 'activation').length;
        expect(activations).toBe((2 * p - 2) * m);
      }
    });
  }
});

// What a worker holds at once: summed over its stages at each instant, then the peak over the step.
// The default model's stage is h * w over f32[1, width] per microbatch, and mul keeps both inputs;
// the parameter w is not counted as kept (Note [memory budget]): a stage keeps activationBytes of
// each microbatch in flight (the oracle for the bytes below).
describe('simulator: per-worker memory', () => {
  const activationBytes = 64;
  const perStage = activationBytes;

  it("1F1B: worker w holds p - w microbatches at peak, and p - w stages' worth of bytes", () => {
    for (const [p, m] of [
      [2, 2],
      [4, 8],
      [8, 8],
      [8, 32],
    ] as const) {
      const r = simulatePipeline({ schedule: '1f1b', workers: p, microbatches: m, activationBytes });
      const held = Array.from({ length: p }, (_, w) => p - w);
      expect(r.peakInFlight).toEqual(held);
      expect(r.peakKeptBytes).toEqual(held.map((n) => n * perStage));
    }
  });

  it('interleaved 1F1B, p = 4, m = 8, 2 chunks: workers hold 11 9 7 5, not their highest stage (8 8 7 5)', () => {
    const r = simulatePipeline({
      schedule: 'interleaved-1f1b',
      workers: 4,
      microbatches: 8,
      chunks: 2,
      activationBytes,
    });
    expect(r.peakInFlight).toEqual([11, 9, 7, 5]);
    expect(r.stagePeakInFlight.map((stages) => Math.max(...stages))).toEqual([8, 8, 7, 5]);
    // Nor the sum of the stages' peaks: worker 0's two stages peak at different times.
    expect(r.stagePeakInFlight.map((stages) => stages.reduce((a, b) => a + b, 0))).toEqual([12, 12, 10, 6]);
    expect(r.peakKeptBytes).toEqual([11, 9, 7, 5].map((n) => n * perStage));
  });

  it("every generated schedule: the dry run's per-worker peak is the simulator's", () => {
    for (const kind of SCHEDULE_KINDS)
      for (const [p, m, chunks] of [
        [4, 8, 1],
        [4, 8, 2],
        [3, 6, 2],
      ] as const) {
        let schedule: Slot[][];
        try {
          schedule = generateSchedule(kind, { workers: p, microbatches: m, chunks });
        } catch (err) {
          if (err instanceof ScheduleError) continue; // a configuration the kind refuses
          throw err;
        }
        const r = simulatePipeline({ schedule: kind, workers: p, microbatches: m, chunks });
        expect(r.peakInFlight, `${kind} p=${p} m=${m} chunks=${chunks}`).toEqual(
          bubbleStats(schedule).workerPeakInFlight,
        );
      }
  });

  it('GPipe holds every microbatch of every stage it runs', () => {
    const r = simulatePipeline({ schedule: 'gpipe', workers: 4, microbatches: 6, activationBytes });
    expect(r.peakInFlight).toEqual([6, 6, 6, 6]);
    expect(r.peakKeptBytes).toEqual(new Array(4).fill(6 * perStage));
  });
});

describe('simulator: stage placement (Note [stage placement])', () => {
  it("a V schedule runs with its placement: the dry run's step time, and messages only across workers", () => {
    const microbatches = 4;
    const r = simulatePipeline({
      schedule: V2x4(microbatches),
      stagePlacement: 'v',
      workers: 2,
      chunks: 2,
      microbatches,
      costs: { forward: 1, backward: 2 },
    });
    expect(r.stages).toBe(4);
    expect(r.makespan).toBe(bubbleStats(V2x4(microbatches), { costF: 1, costB: 2 }).makespan);
    // Stage 0 -> 1 crosses from worker 0 to 1, 1 -> 2 stays on worker 1, 2 -> 3 goes back to worker 0;
    // each gradient goes the other way.
    const count = (kind: string, from: number, to: number) =>
      r.trace.flows.filter((f) => f.kind === kind && f.from === from && f.to === to).length;
    expect([count('activation', 0, 1), count('activation', 1, 0)]).toEqual([microbatches, microbatches]);
    expect([count('gradient', 0, 1), count('gradient', 1, 0)]).toEqual([microbatches, microbatches]);
    expect(r.trace.flows).toHaveLength(4 * microbatches);
  });

  it('refuses a V schedule placed by the default loop', () => {
    expect(() => simulatePipeline({ schedule: V2x4(2), workers: 2, chunks: 2, microbatches: 2 })).toThrow(
      ScheduleError,
    );
  });
});

describe('simulator: FLOP costs', () => {
  it("a CNN's tasks cost their op's FLOPs at the shard's batch: conv2d 2 N*OH*OW*K*F, its backward twice that", () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 8, 8, 2]);
    const h = b.relu(b.conv2d(x, b.param('w', [3, 3, 2, 4]), { padding: 1 }));
    const logits = b.matmul(b.flatten(b.maxPool2d(h, 2)), b.param('v', [64, 3]));
    b.output('loss', b.softmaxCrossEntropy(logits, b.input('y', ['B'])));
    const plan = compile(b.build(), { workers: 2, placement: 'stages' });
    // flopCosts binds B to the batch size it is given: the shard's, 6 rows in 2 microbatches.
    const cost = flopCosts(plan, { gflops: 1, overheadMs: 0, batchSize: 3 });
    const r = simulate(plan, { microbatches: 2, batchSize: 6, cost });
    const conv = plan.graph.nodes.find((n) => n.op === 'conv2d')!.id;
    const spans = r.trace.spans.filter((s) => s.node === conv);
    // Shards of 3 rows: 2 * (3*8*8) * (3*3*2) * 4 FLOPs at 1e6 FLOP per ms.
    const forward = (2 * (3 * 8 * 8) * (3 * 3 * 2) * 4) / 1e6;
    const durations = (forwardPhase: boolean) =>
      spans.filter((s) => (s.phase === 'F') === forwardPhase).map((s) => s.end - s.start);
    expect(durations(true)).toHaveLength(2);
    for (const d of durations(true)) expect(d).toBeCloseTo(forward, 12);
    expect(durations(false)).toHaveLength(2);
    for (const d of durations(false)) expect(d).toBeCloseTo(2 * forward, 12);
  });
});
