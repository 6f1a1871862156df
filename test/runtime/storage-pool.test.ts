// Buffer recycling on worker threads and on hosts sharing this thread over byte wires, in memory and
// over TCP, where large tensors travel beside their frames and their buffers go back to the pools
// (Note [storage pool], Note [step arena], Note [byte wires and recycled storage], Note [tensors
// beside the frame]): with poison on, every storage
// given back is filled with NaN, so a storage recycled while still in use (or while a wire still held
// it) would show in the loss, the gradients or the parameters. They stay bitwise equal to the
// reference loop.
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { sizeOf } from '../../src/tensor/shape.ts';
import { cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import type { Model } from '../support/models.ts';

const WIDTH = 128;
const BATCH = 256;
const STEPS = 3;

/** An MLP whose activations (64 x 128 float32 per shard, 32 KiB) and weights (64 KiB) are pooled. */
function wideMlp(layers = 4): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', WIDTH]);
  const y = b.input('y', ['B']);
  let h = x;
  for (let i = 0; i < layers; i++)
    h = b.tanh(
      b.add(
        b.matmul(h, b.param(`w${i}`, [WIDTH, WIDTH])),
        b.param(`b${i}`, [WIDTH], { init: { kind: 'normal', std: 0.1 } }),
      ),
    );
  b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('out', [WIDTH, 8])), y));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 5),
    feeds: (batch, seed = 1) => {
      const rng = new Rng(seed);
      return {
        x: rng.normalTensor([batch, WIDTH]),
        y: tensor(Array.from({ length: batch }, () => rng.int(8))),
      };
    },
  };
}

/** The reference loop: per step, the reference engine's loss and gradients, then the optimizer here. */
function referenceLoop(
  model: Model,
  spec: OptimizerSpec | null,
  split: { replicas: number; microbatches: number },
) {
  const params = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, cast(v)]));
  const run = spec === null ? null : new OptimizerRun(makeOptimizer(spec));
  const steps: { loss: number; grads: Record<string, Tensor> }[] = [];
  for (let s = 0; s < STEPS; s++) {
    const out = referenceStep(model.graph, model.feeds(BATCH, s), params, split);
    steps.push(out);
    run?.apply(params, out.grads);
  }
  return { steps, params };
}

type Layout = { name: string; options: Partial<RuntimeOptions>; replicas: number; microbatches: number };
const LAYOUTS: Layout[] = [
  { name: 'data-parallel, 2 workers, 2 replicas', options: { replicas: 2 }, replicas: 2, microbatches: 2 },
  { name: '2-stage 1F1B', options: { schedule: '1f1b' }, replicas: 1, microbatches: 2 },
  {
    name: 'interleaved 1F1B, 2 chunks',
    options: { schedule: 'interleaved-1f1b', chunks: 2 },
    replicas: 1,
    microbatches: 2,
  },
  { name: 'ZB-H1', options: { schedule: 'zb-h1' }, replicas: 1, microbatches: 2 },
];
const OPTIMIZERS: (OptimizerSpec | null)[] = [{ name: 'sgd', lr: 0.05, momentum: 0.9 }, null];

const CASES = (['threads', 'loopback', 'tcp-loopback'] as const).flatMap((mode) =>
  LAYOUTS.map((layout) => [mode, layout.name, layout] as const),
);
describe.each(CASES)('%s: pooled storages with poison, %s', (mode, _, layout) => {
  it.each(OPTIMIZERS)(
    'optimizer %o: loss, gradients and parameters bitwise equal to the reference loop',
    async (spec) => {
      const model = wideMlp();
      const split = { replicas: layout.replicas, microbatches: layout.microbatches };
      const ref = referenceLoop(model, spec, split);
      const rt = await createRuntime(model.graph, {
        mode,
        workers: 2,
        ...layout.options,
        microbatches: layout.microbatches,
        params: model.params,
        pool: { poison: true },
        ...(spec === null ? {} : { optimizer: spec }),
      });
      try {
        for (let s = 0; s < STEPS; s++) {
          const out = await rt.step(model.feeds(BATCH, s));
          expect(out.loss, `step ${s}`).toBe(ref.steps[s]!.loss);
          if (spec === null) expectBitwiseAll(out.grads, ref.steps[s]!.grads, `step ${s} `);
        }
        const params = await rt.getParams();
        expectBitwiseAll(params, ref.params);
        const stats = await rt.stats();
        // The pool is really used: later steps reuse what earlier ones gave back.
        expect(stats.reduce((n, h) => n + h.poolHits, 0)).toBeGreaterThan(0);
        for (const h of stats) expect(h.recycledBytes).toBeGreaterThan(0);
        // Every tensor byte one host sent, the other received (two hosts).
        expect(stats[0]!.sentBytes).toBe(stats[1]!.receivedBytes);
        expect(stats[1]!.sentBytes).toBe(stats[0]!.receivedBytes);
      } finally {
        await rt.close();
      }
    },
  );
});

describe('tensor bytes per worker', () => {
  const model = wideMlp();
  const paramBytes = Object.values(model.params).reduce((n, t) => n + t.bytes, 0);
  const shardRows = BATCH / 4;

  it.each(['replicated', 'sharded', 'replica-0'] as const)(
    'data parallel (%s parameters): each copy or owner sends and receives what Note [parameter placement] says',
    async (paramPlacement) => {
      const rt = await createRuntime(model.graph, {
        workers: 2,
        replicas: 2,
        microbatches: 2,
        paramPlacement,
        params: model.params,
        optimizer: { name: 'adam', lr: 0.01 },
        pool: { poison: true },
      });
      try {
        for (let s = 0; s < STEPS; s++) await rt.step(model.feeds(BATCH, s));
        const stats = await rt.stats();
        for (const w of [0, 1]) expect(stats[w]!.poolHits).toBeGreaterThan(0);
        if (paramPlacement === 'replicated') {
          // Both hold every parameter; each sends the other its replica's contributions, per microbatch.
          for (const w of [0, 1]) {
            expect(stats[w]!.paramBytes).toBe(paramBytes);
            expect(stats[w]!.sentBytes).toBe(2 * paramBytes);
            expect(stats[w]!.receivedBytes).toBe(2 * paramBytes);
          }
          return;
        }
        // The bytes of the parameters each worker owns.
        const owned = [0, 0];
        for (const node of model.graph.params())
          owned[rt.plan.placement[0]![node.id]!]! += 4 * sizeOf(node.shape as number[]);
        expect(owned[0]! + owned[1]!).toBe(paramBytes);
        if (paramPlacement === 'sharded') expect(Math.min(...owned)).toBeGreaterThan(0);
        else expect(owned).toEqual([paramBytes, 0]);
        for (const w of [0, 1]) {
          const other = 1 - w;
          expect(stats[w]!.paramBytes).toBe(owned[w]);
          // Its parameters' values out to the other replica, and the other's gradients in, per microbatch.
          expect(stats[w]!.sentBytes).toBe(owned[w]! + 2 * owned[other]!);
          expect(stats[w]!.receivedBytes).toBe(owned[other]! + 2 * owned[w]!);
        }
      } finally {
        await rt.close();
      }
    },
  );

  it('a 2-stage pipeline: one activation forward and one gradient back per microbatch', async () => {
    const rt = await createRuntime(model.graph, {
      workers: 2,
      schedule: '1f1b',
      microbatches: 4,
      params: model.params,
      optimizer: { name: 'sgd', lr: 0.05, momentum: 0.9 },
      pool: { poison: true },
    });
    try {
      for (let s = 0; s < STEPS; s++) await rt.step(model.feeds(BATCH, s));
      const stats = await rt.stats();
      // The boundary is a [rows, WIDTH] float32 activation: the stages split between layers.
      const crossing = rt.plan.crossEdges.filter((e) => e.fromWorker === 0);
      expect(new Set(crossing.map((e) => e.from)).size).toBe(1);
      const bytes = 4 * shardRows * WIDTH;
      expect(stats[0]!.sentBytes).toBe(4 * bytes);
      expect(stats[1]!.receivedBytes).toBe(4 * bytes);
      expect(stats[1]!.sentBytes).toBe(4 * bytes);
      expect(stats[0]!.receivedBytes).toBe(4 * bytes);
    } finally {
      await rt.close();
    }
  });

  it('pool: false turns recycling off', async () => {
    const rt = await createRuntime(model.graph, {
      workers: 2,
      schedule: '1f1b',
      microbatches: 2,
      params: model.params,
      pool: false,
    });
    try {
      for (let s = 0; s < 2; s++) await rt.step(model.feeds(BATCH, s));
      for (const h of await rt.stats()) {
        expect([h.poolHits, h.poolMisses, h.pooledBytes, h.recycledBytes]).toEqual([0, 0, 0, 0]);
        expect(h.sentBytes).toBeGreaterThan(0);
      }
    } finally {
      await rt.close();
    }
  });
});
