import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
import { compile } from '../../src/partition/plan.ts';
import { hostActions } from '../../src/runtime/pipeline.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { actionsOf, formatAction } from '../../src/schedule/action.ts';
import { SCHEDULE_KINDS } from '../../src/schedule/config.ts';
import { resolveStagePlacement } from '../../src/schedule/placement.ts';
import { simulatePipeline } from '../../src/sim/pipeline.ts';
import { deepMlp, tiedDeep } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';
import { chunksFor, DUAL_PIPE_V2x4, scheduleError, V2x4 } from '../support/schedules.ts';

const p = 4;

describe.each(['in-process', 'loopback'] as const)(
  'pipelines (%s): every schedule x microbatches is exact or refused before starting',
  (mode) => {
    const model = deepMlp(8);
    for (const kind of SCHEDULE_KINDS) {
      for (const microbatches of [1, p - 1, p, p + 1, 2 * p]) {
        it(`${kind}, ${microbatches} microbatches`, async () => {
          const chunks = chunksFor(kind);
          const feeds = model.feeds(16);
          const options: RuntimeOptions = {
            mode,
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
            const needsMoreMicrobatches =
              ((kind === '1f1b' || kind === 'zb-h1') && microbatches < p) ||
              (kind === 'dualpipe-v' && microbatches < 2 * p);
            const rounds = Math.max(1, Math.floor(microbatches / p));
            const needsMultiple = kind.startsWith('interleaved') && microbatches % rounds !== 0;
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
          mode,
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
  },
);

describe('ZB-H1 with m not a multiple of p', () => {
  it('p = 3, m = 20 (one chunk is one round): every microbatch runs, bitwise equal to the reference, and the simulator finishes it', async () => {
    const model = deepMlp(6);
    const options: RuntimeOptions = {
      mode: 'in-process',
      workers: 3,
      schedule: 'zb-h1',
      microbatches: 20,
      params: model.params,
      stepTimeoutMs: 10_000,
    };
    const rt = await createRuntime(model.graph, options);
    try {
      await expectMatchesReference(model.graph, model.params, model.feeds(40), options, rt);
    } finally {
      await rt.close();
    }
    const sim = simulatePipeline({
      schedule: 'zb-h1',
      workers: 3,
      microbatches: 20,
      costs: { forward: 1, backward: 2, input: 1, weight: 1 },
    });
    expect(sim.makespan).toBe(3 * 20 + 3 - 1);
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

  // PyTorch's other schedules: looping placement (interleaved 1F1B with m not a multiple of p,
  // interleaved zero bubble, looped BFS) and V placement (ZB-V, DualPipeV and its overlapped pairs).
  it.each([
    ['interleaved-1f1b', 2, 6, 'loop'],
    ['interleaved-zb', 2, 4, 'loop'],
    ['looped-bfs', 3, 5, 'loop'],
    ['zb-v', 2, 6, 'v'],
    ['dualpipe-v', 2, 8, 'v'],
  ] as const)(
    '%s, %i chunks per worker, %i microbatches, over 4 threads (placement %s): bitwise equal to the reference',
    async (schedule, chunks, microbatches, placement) => {
      const model = deepMlp(12);
      const options: RuntimeOptions = { workers: 4, schedule, chunks, microbatches, params: model.params };
      const rt = await createRuntime(model.graph, options);
      try {
        expect(rt.plan.stageWorkers).toEqual(resolveStagePlacement(placement, 4 * chunks, 4));
        await expectMatchesReference(model.graph, model.params, model.feeds(20), options, rt);
      } finally {
        await rt.close();
      }
    },
  );
});

describe('stage placement (Note [stage placement]): V-placed hand-written schedules', () => {
  const model = deepMlp(8);
  /** V2x4 mirrored: stages 0 and 3 on worker 1, 1 and 2 on worker 0. */
  const mirrored = (microbatches: 2 | 4) => [...V2x4(microbatches)].reverse();

  async function expectReference(options: RuntimeOptions & { microbatches: number }): Promise<Runtime> {
    const rt = await createRuntime(model.graph, { params: model.params, stepTimeoutMs: 20_000, ...options });
    try {
      await expectMatchesReference(model.graph, model.params, model.feeds(16), options, rt);
    } finally {
      await rt.close();
    }
    return rt;
  }

  describe.each(['in-process', 'threads', 'loopback'] as const)('%s', (mode) => {
    it.each([2, 4] as const)(
      '2 workers x 4 stages placed v, %i microbatches: bitwise equal to the reference',
      async (microbatches) => {
        const rt = await expectReference({
          mode,
          workers: 2,
          chunks: 2,
          stagePlacement: 'v',
          schedule: V2x4(microbatches),
          microbatches,
        });
        expect(rt.plan.stageWorkers).toEqual([0, 1, 1, 0]);
      },
    );

    it('2 replicas of the V on 4 workers', async () => {
      const rt = await expectReference({
        mode,
        workers: 4,
        replicas: 2,
        chunks: 2,
        stagePlacement: 'v',
        schedule: V2x4(4),
        microbatches: 4,
      });
      const tanh = model.graph.nodes.filter((n) => n.op === 'tanh').map((n) => n.id);
      const stage3 = tanh.filter((id) => rt.plan.stageOf[id] === 3);
      expect(stage3.length).toBeGreaterThan(0);
      for (const id of stage3) expect([rt.plan.placement[0]![id], rt.plan.placement[1]![id]]).toEqual([0, 2]);
    });

    it('an explicit array, given with the schedule: stages 0 and 3 on worker 1', async () => {
      const rt = await expectReference({
        mode,
        workers: 2,
        schedule: { schedule: mirrored(4), stagePlacement: [1, 0, 0, 1] },
        microbatches: 4,
      });
      expect(rt.plan.stages).toBe(4);
      expect(rt.plan.placement[0]![model.graph.node('loss').id]).toBe(1);
    });
  });

  it('a V schedule run as the default loop placement is refused before any worker starts, naming the action, its row and the worker', async () => {
    const err = await rejection(
      createRuntime(model.graph, { workers: 2, chunks: 2, schedule: V2x4(2), microbatches: 2 }),
    );
    expect(err).toBeInstanceOf(ScheduleError);
    expect(err.message).toContain(
      "action 3F0 is in row 0 (step 3), but the stage placement 'loop' puts stage 3 on worker 1; " +
        "the rows place the stages as [0, 1, 1, 0], which is stagePlacement 'v'",
    );
    expect(err.message).toContain('>3F0<');
  });

  it('a placement option that contradicts the schedule is refused; one that resolves the same is not', async () => {
    const contradicts = await rejection(
      createRuntime(model.graph, {
        mode: 'in-process',
        workers: 2,
        schedule: 'interleaved-1f1b',
        chunks: 2,
        stagePlacement: 'v',
        microbatches: 2,
      }),
    );
    expect(contradicts.message).toBe(
      "the schedule 'interleaved-1f1b' places its stages by 'loop' ([0, 1, 0, 1]), but the option " +
        "stagePlacement is 'v' ([0, 1, 1, 0])",
    );
    // With one chunk per worker, 'v' and 'loop' are the same placement.
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      schedule: '1f1b',
      stagePlacement: 'v',
      microbatches: 2,
      params: model.params,
    });
    await rt.close();
    expect(rt.plan.stageWorkers).toEqual([0, 1]);
  });

  it("the V schedules default to two chunks per worker placed 'v'; other chunk counts are refused", async () => {
    const options = { mode: 'in-process', workers: 2, microbatches: 4, params: model.params } as const;
    for (const schedule of ['zb-v', 'dualpipe-v'] as const) {
      const rt = await createRuntime(model.graph, { ...options, schedule });
      await rt.close();
      expect(rt.plan.stageWorkers).toEqual([0, 1, 1, 0]);
    }
    const err = await rejection(createRuntime(model.graph, { ...options, schedule: 'zb-v', chunks: 3 }));
    expect(err.message).toContain('ZB-V places two stages per worker in a V (chunks = 2), found chunks = 3');
  });

  it('hostActions refuses a schedule whose rows disagree with the plan', () => {
    const plan = compile(model.graph, { workers: 2, stages: 4 });
    const err = scheduleError(() => hostActions(plan, V2x4(2)));
    expect(err.message).toContain('action 3F0 is in row 0 (step 3), but the plan puts stage 3 on worker 1');
    expect(
      hostActions(compile(model.graph, { workers: 2, stagePlacement: 'v', stages: 4 }), V2x4(2))[0],
    ).toHaveLength(8);
  });

  it('hostActions runs an overlapped pair as its two halves, forward first (Note [overlapped F and B])', () => {
    const plan = compile(model.graph, { workers: 2, stagePlacement: 'v', stages: 4 });
    const schedule = DUAL_PIPE_V2x4();
    const text = hostActions(plan, schedule)[0]!.map((a) => `${a.stage}${a.kind}${a.mb}`);
    // Worker 0's (0F3;3B1)OVERLAP_F_B and (3F2;0B0)OVERLAP_F_B.
    expect(text.slice(7, 11)).toEqual(['0F3', '3B1', '3F2', '0B0']);
    expect(text).toEqual(schedule[0]!.flatMap(actionsOf).map(formatAction));
  });

  it('an empty schedule is refused', async () => {
    for (const schedule of [[], [[], []]]) {
      const err = await rejection(createRuntime(model.graph, { mode: 'in-process', workers: 2, schedule }));
      expect(err).toBeInstanceOf(ScheduleError);
      expect((err as ScheduleError).context.rule).toBe('not empty');
    }
  });
});

async function rejection(promise: Promise<Runtime>): Promise<Error> {
  try {
    await (await promise).close();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}
