// Credits per channel over the runtime (Note [activation credits]): a deliberately slow consumer (a
// host held so that it takes messages and runs nothing) has at most its windows of activations
// waiting, measured through host stats; every schedule still runs to the end with windows of one
// microbatch, bitwise equal to the reference.
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { channels } from '../../src/partition/channels.ts';
import type { Plan } from '../../src/partition/plan.ts';
import { hostLimits } from '../../src/runtime/budget.ts';
import type { InProcessCluster } from '../../src/runtime/in-process.ts';
import { hostActions } from '../../src/runtime/pipeline.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { scheduleFromCsv } from '../../src/schedule/csv.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { deepMlp, type Model } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

const BATCH = 16;

/** The most bytes that may wait at `worker` with windows of one microbatch: a microbatch per channel. */
function oneMicrobatchPerChannel(plan: Plan, worker: number, rows: number): number {
  let bytes = 0;
  for (const c of channels(plan)) {
    if (c.to !== worker) continue;
    for (const id of c.nodes) {
      const node = plan.graph.nodes[id]!;
      bytes += node.shape.reduce<number>((p, d) => p * (typeof d === 'number' ? d : rows), 1) * 4;
    }
  }
  return bytes;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('a deliberately slow consumer (in-process, held)', () => {
  it.each([
    ['dataflow order', {}],
    ['GPipe', { schedule: 'gpipe' }],
  ] as const)(
    '%s: what waits at it stays within its window; the step is bitwise unchanged',
    async (_, extra) => {
      const m = 8;
      const model = deepMlp(4);
      for (const [linkWindowBytes, waiting] of [
        [false, m],
        [1, 1],
      ] as const) {
        const options: RuntimeOptions = {
          mode: 'in-process',
          workers: 2,
          microbatches: m,
          linkWindowBytes,
          ...extra,
        };
        const rt = await createRuntime(model.graph, { ...options, params: model.params });
        try {
          const cluster = (rt as unknown as { cluster: InProcessCluster }).cluster;
          const perMicrobatch = oneMicrobatchPerChannel(rt.plan, 1, BATCH / m);
          cluster.hold(1, true);
          const checked = expectMatchesReference(model.graph, model.params, model.feeds(BATCH), options, rt);
          // Worker 0 runs until it can do nothing more; worker 1 takes what arrives and runs nothing.
          do await nextTurn();
          while (!cluster.quiet([1]));
          const [, held] = await rt.stats();
          expect(held!.queuedBytes).toBe(waiting * perMicrobatch);
          cluster.hold(1, false);
          await checked;
          const [, after] = await rt.stats();
          expect(after!.peakQueuedBytes).toBe(waiting * perMicrobatch);
          expect(after!.queuedBytes).toBe(0);
        } finally {
          await rt.close();
        }
      }
    },
  );
});

/** Stage 0 feeds stages 1 and 2, both on worker 1: a skip connection over the turn of a V. */
function skipOverTheTurn(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 8]);
  const y = b.input('y', ['B']);
  const layer = (h: ReturnType<typeof b.input>, i: number) => b.tanh(b.matmul(h, b.param(`w${i}`, [8, 8])));
  const h0 = b.onStage(0, () => layer(x, 0));
  const h1 = b.onStage(1, () => layer(h0, 1));
  b.onStage(2, () =>
    b.output('loss', b.softmaxCrossEntropy(b.matmul(b.add(layer(h1, 2), h0), b.param('out', [8, 4])), y)),
  );
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 3),
    feeds: (batch, seed = 5) => {
      const rng = new Rng(seed);
      return { x: rng.normalTensor([batch, 8]), y: tensor(Array.from({ length: batch }, () => rng.int(4))) };
    },
  };
}

describe('windows of one microbatch under every schedule: bitwise equal, queues within the windows', () => {
  const model = deepMlp(4);
  const CASES: [string, RuntimeOptions][] = [
    ['dataflow, stages', { workers: 2 }],
    ['dataflow, per node', { workers: 2, placement: 'per-node' }],
    ['GPipe', { workers: 2, schedule: 'gpipe' }],
    ['1F1B', { workers: 2, schedule: '1f1b' }],
    ['interleaved 1F1B, 2 chunks', { workers: 2, schedule: 'interleaved-1f1b', chunks: 2 }],
    ['ZB-H1', { workers: 2, schedule: 'zb-h1' }],
    ['1F1B, 2 replicas of 2 stages', { workers: 4, replicas: 2, schedule: '1f1b' }],
  ];
  const MODES = [
    ['in-process', { mode: 'in-process', shuffleSeed: 3 }],
    ['loopback', { mode: 'loopback', pool: { poison: true } }],
    ['threads', { mode: 'threads' }],
  ] as const;
  const matrix = MODES.flatMap(([mode, modeOptions]) =>
    CASES.filter(([name]) => mode !== 'threads' || name === '1F1B' || name === 'dataflow, per node').map(
      ([name, options]) => [mode, name, { ...modeOptions, ...options }] as const,
    ),
  );
  it.each(matrix)('%s: %s', async (_, __, caseOptions) => {
    const m = 4;
    const options: RuntimeOptions = { ...caseOptions, microbatches: m, linkWindowBytes: 1 };
    const rt = await createRuntime(model.graph, { ...options, params: model.params });
    try {
      for (let step = 0; step < 2; step++)
        await expectMatchesReference(model.graph, model.params, model.feeds(BATCH, step), options, rt);
      const rows = BATCH / ((options.replicas ?? 1) * m);
      for (const [w, s] of (await rt.stats()).entries())
        expect(s.peakQueuedBytes, `worker ${w}`).toBeLessThanOrEqual(
          oneMicrobatchPerChannel(rt.plan, w, rows),
        );
    } finally {
      await rt.close();
    }
  });

  it('a skip connection over the turn of a V needs two microbatches per window, and gets them', async () => {
    const { graph, params, feeds } = skipOverTheTurn();
    const rows = [
      '0F0,0F1,0F2,0F3,0B0,0B1,0B2,0B3',
      '1F0,1F1,2F0,1F2,2F1,1F3,2F2,2F3,2B0,1B0,2B1,1B1,2B2,1B2,2B3,1B3',
    ].join('\n');
    const schedule = { schedule: scheduleFromCsv(rows), stagePlacement: [0, 1, 1] };
    const options: RuntimeOptions = {
      mode: 'loopback',
      workers: 2,
      placement: 'manual',
      schedule,
      microbatches: 4,
      linkWindowBytes: 1,
    };
    const rt: Runtime = await createRuntime(graph, { ...options, params });
    try {
      const pipeline = { schedule: schedule.schedule, actions: hostActions(rt.plan, schedule.schedule) };
      expect(hostLimits(rt.plan, options, pipeline).flow).toEqual({ windowBytes: 1, minWindow: 2 });
      await expectMatchesReference(graph, params, feeds(BATCH), options, rt);
      const [, consumer] = await rt.stats();
      expect(consumer!.peakQueuedBytes).toBeLessThanOrEqual(
        2 * oneMicrobatchPerChannel(rt.plan, 1, BATCH / 4),
      );
    } finally {
      await rt.close();
    }
  });
});
