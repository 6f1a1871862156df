import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { SCHEDULE_KINDS } from '../../src/schedule/config.ts';
import { deepMlp, tiedDeep } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

const p = 4;

describe('pipelines in-process: every schedule x microbatches is exact or refused before starting', () => {
  const model = deepMlp(8);
  for (const kind of SCHEDULE_KINDS) {
    for (const microbatches of [1, p - 1, p, p + 1, 2 * p]) {
      it(`${kind}, ${microbatches} microbatches`, async () => {
        const chunks = kind === 'interleaved-1f1b' ? 2 : 1;
        const feeds = model.feeds(16);
        const options: RuntimeOptions = {
          mode: 'in-process',
          workers: p,
          schedule: kind,
          chunks,
          microbatches,
          params: model.params,
          stepTimeoutMs: 5000,
        };
        let runtime: Runtime;
        try {
          runtime = await createRuntime(model.graph, options);
        } catch (err) {
          // Refused before any worker started: only configurations the schedule's rules exclude.
          expect(err).toBeInstanceOf(ScheduleError);
          const needsMoreMicrobatches = (kind === '1f1b' || kind === 'zb-h1') && microbatches < p;
          const needsMultiple = kind === 'interleaved-1f1b' && microbatches % p !== 0;
          expect(needsMoreMicrobatches || needsMultiple).toBe(true);
          return;
        }
        try {
          await expectMatchesReference(model.graph, model.params, feeds, options, runtime);
          expect(runtime.plan.stages).toBe(p * chunks);
        } finally {
          await runtime.close();
        }
      });
    }
  }

  it('a parameter tied across the first and last stages gets the summed gradient, under the I/W split too', async () => {
    const tied = tiedDeep(6);
    const feeds = tied.feeds(16);
    for (const schedule of ['1f1b', 'zb-h1'] as const) {
      const options: RuntimeOptions = {
        mode: 'in-process',
        workers: p,
        schedule,
        microbatches: 4,
        params: tied.params,
      };
      const rt = await createRuntime(tied.graph, options);
      try {
        const table = tied.graph.node('embedding').id;
        expect(rt.plan.placement[0]![table]).toBe(0);
        const consumers = rt.plan.consumers[table]!.map(([c]) => rt.plan.stageOf[c]);
        expect(new Set(consumers)).toEqual(new Set([0, p - 1]));
        await expectMatchesReference(tied.graph, tied.params, feeds, options, rt);
      } finally {
        await rt.close();
      }
    }
  });

  it('a hand-written schedule that deadlocks is refused with the grid', async () => {
    const model2 = deepMlp(4);
    const F = (stage: number, microbatch: number) => ({ kind: 'F' as const, stage, microbatch });
    const B = (stage: number, microbatch: number) => ({ kind: 'B' as const, stage, microbatch });
    // Worker 1 wants the backward before its own forward.
    const schedule = [
      [F(0, 0), B(0, 0)],
      [B(1, 0), F(1, 0)],
    ];
    await expect(
      createRuntime(model2.graph, {
        mode: 'in-process',
        workers: 2,
        schedule,
        microbatches: 1,
        params: model2.params,
      }),
    ).rejects.toThrow(ScheduleError);
  });
});

describe('pipelines on worker threads', () => {
  it('interleaved 1F1B (2 chunks per worker) and ZB-H1 over 4 threads are bitwise equal to the reference', async () => {
    const model = deepMlp(8);
    const feeds = model.feeds(16);
    for (const [schedule, chunks] of [
      ['interleaved-1f1b', 2],
      ['zb-h1', 1],
    ] as const) {
      const options: RuntimeOptions = { workers: 4, schedule, chunks, microbatches: 4, params: model.params };
      const rt = await createRuntime(model.graph, options);
      try {
        await expectMatchesReference(model.graph, model.params, feeds, options, rt);
      } finally {
        await rt.close();
      }
    }
  });
});
