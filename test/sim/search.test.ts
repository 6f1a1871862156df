// searchSchedule (Note [search costs]): candidates ranked by simulated step time against closed forms,
// the ones over the memory limit marked, the ones a schedule refuses skipped with its reason, and
// costs calibrated from a trace giving back the step they were measured on, and from a real step's
// trace giving the bytes its hosts kept and sent.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { simulatePipeline } from '../../src/sim/pipeline.ts';
import { formatSearch, searchSchedule } from '../../src/sim/search.ts';
import { stepCosts } from '../../src/trace/calibrate.ts';
import { deepMlp } from '../support/models.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe('searchSchedule: ranking', () => {
  // 1F1B on p = 4 with the whole model's forward 128 ms and backward 256 ms: a stage's F and B of one
  // microbatch take 128/(4m) and 256/(4m) ms, plus an overhead o per task, and the step takes
  // (m + p - 1)(F + B) = (m + 3)(96/m + 2o). Fewer microbatches leave a larger bubble, more pay the
  // overhead more often: the fastest m is sqrt(96 (p - 1) / 2o) = 8 for o = 2.25.
  const overheadMs = 2.25;
  const costs = { forward: 128, backward: 256, overheadMs, keptBytes: GiB };
  const closedForm = (m: number) => (m + 3) * (96 / m + 2 * overheadMs);

  it('ranks by step time: the closed form, fastest at m = 8', () => {
    const r = searchSchedule({ workers: 4, costs, microbatches: [4, 8, 16, 32], schedules: ['1f1b'] });
    expect(r.ranked.map((c) => c.makespan)).toEqual([8, 4, 16, 32].map(closedForm).sort((a, b) => a - b));
    // m = 4 and m = 16 tie (199.5 ms); the one keeping fewer bytes comes first.
    expect(r.ranked.map((c) => c.microbatches)).toEqual([8, 16, 4, 32]);
    expect(r.best?.microbatches).toBe(8);
    expect(r.skipped).toEqual([]);
  });

  it('marks the candidates over the memory limit: the best is the fastest that fits', () => {
    // Worker 0 of 1F1B holds p = 4 microbatches of a stage keeping GiB / (4m) each: GiB / m.
    const r = searchSchedule({
      workers: 4,
      costs,
      memoryLimit: 100 * MiB,
      microbatches: [4, 8, 16, 32],
      schedules: ['1f1b'],
    });
    for (const c of r.ranked) {
      expect(c.peakKeptBytes).toEqual([4, 3, 2, 1].map((n) => (n * GiB) / (4 * c.microbatches)));
      expect(c.overLimit).toBe(GiB / c.microbatches > 100 * MiB);
    }
    expect(r.ranked.filter((c) => c.overLimit).map((c) => c.microbatches)).toEqual([8, 4]);
    expect(r.best?.microbatches).toBe(16);
    expect(r.best?.makespan).toBe(closedForm(16));
    expect(r.bestTrace?.spans.length).toBeGreaterThan(0);
  });

  it('across schedules and chunks, without overheads: each closed form, and what holds more memory', () => {
    // F = 128, B = I + W = 256 for the model; ideal = (F + B) / p = 96 ms.
    const r = searchSchedule({
      workers: 4,
      costs: { forward: 128, backward: 256, input: 128, weight: 128, keptBytes: GiB },
      memoryLimit: 200 * MiB,
      microbatches: [8, 16],
      chunks: [1, 2],
      schedules: ['gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1'],
    });
    const find = (schedule: string, m: number, chunks: number) =>
      r.ranked.find((c) => c.schedule === schedule && c.microbatches === m && c.chunks === chunks)!;
    for (const m of [8, 16]) {
      expect(find('gpipe', m, 1).makespan).toBe(96 * (1 + 3 / m));
      expect(find('1f1b', m, 1).makespan).toBe(96 * (1 + 3 / m));
      expect(find('interleaved-1f1b', m, 2).makespan).toBe(96 * (1 + 3 / (2 * m)));
      // ZB-H1 with F = I = W per stage: the bubble (p - 1)/(3m) of ideal.
      expect(find('zb-h1', m, 1).makespan).toBe(96 * (1 + 3 / (3 * m)));
      // GPipe holds every microbatch: GiB / p per worker whatever m; 1F1B and ZB-H1 GiB / m.
      expect(find('gpipe', m, 1).peakKeptBytes![0]).toBe(GiB / 4);
      expect(find('gpipe', m, 1).overLimit).toBe(true);
      expect(find('zb-h1', m, 1).peakKeptBytes![0]).toBe(GiB / m);
    }
    // Interleaved, m = 8: worker 0 holds 11 stage-microbatches of GiB / 64 each (176 MiB, fits);
    // it is faster than 1F1B at m = 16 but slower than ZB-H1 at m = 16.
    expect(find('interleaved-1f1b', 8, 2).peakKeptBytes![0]).toBe((11 * GiB) / 64);
    const order = r.ranked.map((c) => c.makespan);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(r.best).toMatchObject({ schedule: 'zb-h1', microbatches: 16, chunks: 1 });
  });
});

describe('searchSchedule: skipped candidates', () => {
  it("skips what a schedule's rules refuse, and repeats of a schedule already tried, saying why", () => {
    const r = searchSchedule({
      workers: 4,
      costs: { forward: 1, backward: 2 },
      microbatches: [2, 6, 8],
      chunks: [1, 2],
      schedules: ['1f1b', 'interleaved-1f1b'],
    });
    const why = (schedule: string, m: number, chunks: number) =>
      r.skipped.find((s) => s.schedule === schedule && s.microbatches === m && s.chunks === chunks)?.reason;
    expect(why('1f1b', 2, 1)).toMatch(/needs microbatches >= stages \(m >= p\): found microbatches = 2/);
    expect(why('1f1b', 8, 2)).toMatch(/places one stage per worker \(chunks = 1\), found chunks = 2/);
    // Interleaved 1F1B takes m = 2 and 6 on 4 workers (PyTorch's rounds, Note [interleaved rounds]).
    expect(why('interleaved-1f1b', 6, 2)).toBeUndefined();
    expect(why('interleaved-1f1b', 8, 1)).toBe('the same schedule as 1f1b with chunks=1');
    expect(r.ranked.map((c) => `${c.schedule} ${c.microbatches} ${c.chunks}`)).toEqual([
      'interleaved-1f1b 8 2',
      'interleaved-1f1b 6 2',
      '1f1b 8 1',
      '1f1b 6 1',
      'interleaved-1f1b 2 2',
    ]);
    expect(r.skipped).toHaveLength(3 * 2 * 2 - 5);
  });

  it('refuses a search with nothing to search, or a memory limit without the bytes kept', () => {
    const costs = { forward: 1, backward: 2 };
    expect(() => searchSchedule({ workers: 4, costs, microbatches: [] })).toThrow(
      /microbatches: expected a non-empty list of integers >= 1, found \[\]/,
    );
    expect(() =>
      searchSchedule({ workers: 4, costs, microbatches: [8], schedules: ['zigzag' as 'gpipe'] }),
    ).toThrow(/schedules: expected some of gpipe, .*found \["zigzag"\]/);
    expect(() => searchSchedule({ workers: 4, costs, microbatches: [8], memoryLimit: GiB })).toThrow(
      InputError,
    );
  });

  it('prints the ranked table, the skipped lines grouped, and the answer', () => {
    const text = formatSearch(
      searchSchedule({
        workers: 4,
        costs: { forward: 128, backward: 256, keptBytes: GiB },
        memoryLimit: 200 * MiB,
        microbatches: [4, 8],
        schedules: ['gpipe', '1f1b', 'zb-h1'],
        chunks: [1, 2],
      }),
    );
    expect(text).toMatch(/^rank +schedule +microbatches +chunks +stages +step ms +bubble +in flight +kept$/m);
    expect(text).toMatch(/^ +1 +zb-h1 +8 +1 +4 +108\.000 +12\.5% +4 +128\.0 MiB +best$/m);
    expect(text).toMatch(/gpipe +8 +1 +4 +132\.000 +37\.5% +8 +256\.0 MiB +over the limit/);
    expect(text).toMatch(/^ {2}1f1b, chunks=2, m=4,8: 1F1B places one stage per worker/m);
    expect(text).toMatch(
      /best within 200\.0 MiB per worker: zb-h1, 8 microbatches, 1 chunk per worker: 108\.000 ms per step$/,
    );
  });
});

describe('searchSchedule: costs from a trace', () => {
  it("a step's trace gives back its totals, and the search reproduces the step it was measured on", () => {
    // The default model: a stage keeps 64 bytes of each microbatch (its input; its weight is a
    // parameter, not counted as kept).
    const [p, m] = [4, 8];
    const measured = simulatePipeline({
      schedule: 'zb-h1',
      workers: p,
      microbatches: m,
      costs: { forward: 1, backward: 2, input: 1.5, weight: 0.5 },
    });
    const costs = stepCosts([measured.trace, measured.trace]);
    expect(costs).toEqual({
      forward: p * m,
      backward: 2 * p * m,
      input: 1.5 * p * m,
      weight: 0.5 * p * m,
      keptBytes: p * m * 64,
      activationBytes: m * 64,
    });
    const r = searchSchedule({ workers: p, costs, microbatches: [m], schedules: ['zb-h1'] });
    expect(r.ranked[0]!.makespan).toBe(measured.makespan);
    expect(r.ranked[0]!.peakKeptBytes).toEqual(measured.peakKeptBytes);
  });

  it("a real step's trace (in process, 2 workers): the bytes the hosts kept and sent, any schedule's split backward, and a search on them", async () => {
    const model = deepMlp(4);
    const batch = 16;
    const measure = async (schedule: 'gpipe' | 'zb-h1') => {
      const rt = await createRuntime(model.graph, {
        mode: 'in-process',
        workers: 2,
        schedule,
        microbatches: 2,
        params: model.params,
        trace: true,
      });
      try {
        const { trace } = await rt.step(model.feeds(batch));
        return { costs: stepCosts([trace!]), hostPeaks: (await rt.stats()).map((h) => h.peakKeptBytes) };
      } finally {
        await rt.close();
      }
    };
    const gpipe = await measure('gpipe');
    // GPipe runs every forward before any backward, so each host's peak is all it keeps in the step.
    expect(gpipe.costs.keptBytes).toBe(gpipe.hostPeaks[0]! + gpipe.hostPeaks[1]!);
    // One stage boundary, crossed by the whole batch's f32[batch, 8] activation.
    expect(gpipe.costs.activationBytes).toBe(batch * 8 * 4);
    expect(gpipe.costs.forward).toBeGreaterThan(0);
    expect(gpipe.costs.backward).toBeGreaterThan(0);
    expect(gpipe.costs.input).toBeUndefined();
    // ZB-H1 keeps and sends the same bytes; its backward comes split into I and W, which sum to it.
    const zb = await measure('zb-h1');
    expect(zb.costs.keptBytes).toBe(gpipe.costs.keptBytes);
    expect(zb.costs.activationBytes).toBe(gpipe.costs.activationBytes);
    expect(zb.costs.input! + zb.costs.weight!).toBeCloseTo(zb.costs.backward, 9);
    expect(zb.costs.input).toBeGreaterThan(0);
    expect(zb.costs.weight).toBeGreaterThan(0);
    // The search shares the measured costs out (Note [search costs]): GPipe, p = 2, m = 2 takes
    // (m + p - 1)(F + B) / (p m) and each worker keeps half of the step's bytes.
    const { forward, backward, keptBytes } = gpipe.costs;
    const r = searchSchedule({ workers: 2, costs: gpipe.costs, microbatches: [2], schedules: ['gpipe'] });
    expect(r.ranked[0]!.makespan).toBeCloseTo((3 * (forward + backward)) / 4, 9);
    expect(r.ranked[0]!.peakKeptBytes).toEqual([keptBytes / 2, keptBytes / 2]);
  });
});
