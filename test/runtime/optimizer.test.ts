import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { NonFiniteError, WorkerError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { clipGlobalNorm } from '../../src/optim/clip.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import { paramWorkers } from '../../src/partition/plan.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { cast, Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { mlp } from '../support/models.ts';

/** The reference training loop: reference gradients, clipping, the same optimizer on this thread. */
function referenceTraining(
  spec: OptimizerSpec,
  steps: number,
  clipNorm: number | undefined,
  options: { replicas: number; microbatches: number },
) {
  const model = mlp();
  const params = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, cast(v)]));
  const run = new OptimizerRun(makeOptimizer(spec));
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { loss, grads } = referenceStep(model.graph, model.feeds(24, s), params, options);
    losses.push(loss);
    run.apply(params, clipNorm === undefined ? grads : clipGlobalNorm(grads, clipNorm).grads);
  }
  return { losses, params };
}

describe('optimizer on the workers', () => {
  for (const spec of [
    { name: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true },
    { name: 'adam', lr: 0.01 },
    { name: 'adamw', lr: 0.01 },
  ] as OptimizerSpec[]) {
    it(`${spec.name}: losses and parameters bitwise equal to the reference loop, with clipping, 2 replicas`, async () => {
      const model = mlp();
      const options = { replicas: 2, microbatches: 2 };
      const ref = referenceTraining(spec, 4, 0.5, options);
      const rt = await createRuntime(model.graph, {
        mode: 'in-process',
        workers: 4,
        placement: 'stages',
        ...options,
        params: model.params,
        optimizer: spec,
        clipNorm: 0.5,
      });
      try {
        for (let s = 0; s < 4; s++) {
          const out = await rt.step(model.feeds(24, s));
          expect(out.loss).toBe(ref.losses[s]);
          expect(out.grads).toEqual({});
          expect(out.gradNorm).toBeGreaterThan(0);
        }
        const params = await rt.getParams();
        expectBitwiseAll(params, ref.params);
        const state = await rt.getOptimizerState();
        expect(state.step).toBe(4);
        // Tensor bytes per worker: the parameters held and their optimizer state, counted exactly
        // (every copy: Note [parameter placement]).
        const stats = await rt.stats();
        const elements = model.graph
          .params()
          .reduce((n, p) => n + ref.params[p.name!]!.size * paramWorkers(rt.plan, p.id).length, 0);
        expect(stats.reduce((n, h) => n + h.paramBytes, 0)).toBe(elements * 4);
        const perElement = spec.name === 'sgd' ? 8 : 16; // velocity, or m and v, in float64
        expect(stats.reduce((n, h) => n + h.optimizerBytes, 0)).toBe(elements * perElement);
        expect(Object.keys(state.states).sort()).toEqual(Object.keys(ref.params).sort());
      } finally {
        await rt.close();
      }
    });
  }

  it('a non-finite gradient rejects the step and leaves parameters as they were; skip skips the update', async () => {
    const model = mlp();
    const feeds = model.feeds(8);
    const poisoned: Record<string, Tensor> = { ...feeds, x: cast(feeds.x!) };
    poisoned.x!.data[3] = Number.NaN;
    for (const nonFinite of ['error', 'skip'] as const) {
      const rt = await createRuntime(model.graph, {
        mode: 'in-process',
        workers: 2,
        params: model.params,
        optimizer: { name: 'sgd', lr: 0.1 },
        nonFinite,
      });
      try {
        if (nonFinite === 'error') await expect(rt.step(poisoned)).rejects.toThrow(NonFiniteError);
        else expect((await rt.step(poisoned)).skipped).toBe(true);
        const params = await rt.getParams();
        expectBitwiseAll(params, model.params);
        // The runtime goes on: a clean step updates.
        const out = await rt.step(feeds);
        expect(out.skipped).toBe(false);
        expect(rt.updateCount).toBe(1);
      } finally {
        await rt.close();
      }
    }
  });
});

describe('deferred update (Note [deferred update])', () => {
  it.each(['in-process', 'threads', 'loopback'] as const)(
    '%s: back-to-back steps see every update; a failed update breaks the runtime and the next call names it',
    async (mode) => {
      const model = mlp();
      const spec: OptimizerSpec = { name: 'sgd', lr: 0.1, momentum: 0.9 };
      const options = { replicas: 2, microbatches: 1 };
      const ref = referenceTraining(spec, 3, undefined, options);
      const rt = await createRuntime(model.graph, {
        mode,
        workers: 2,
        ...options,
        params: model.params,
        optimizer: spec,
      });
      try {
        // Steps started without awaiting the last: each start still follows the last update.
        const losses = await Promise.all([0, 1, 2].map((s) => rt.step(model.feeds(24, s))));
        expect(losses.map((o) => o.loss)).toEqual(ref.losses);
        const params = await rt.getParams();
        expectBitwiseAll(params, ref.params);
        const name = Object.keys(model.params)[0]!;
        await rt.setFailpoints([{ node: name, phase: 'update', action: 'throw' }]);
        // The step itself succeeds (its loss is known); its update fails on the worker that owns `name`.
        await rt.step(model.feeds(24, 3));
        const err = await rt.getParams().then(
          () => null,
          (e: unknown) => e as WorkerError,
        );
        expect(err).toBeInstanceOf(WorkerError);
        expect(err!.message).toMatch(
          /getParams: the runtime failed earlier.*FailpointError: failpoint: update of/,
        );
        expect(err!.context.phase).toBe('update');
        expect(err!.context.step).toBe(4);
        await expect(rt.step(model.feeds(24, 4))).rejects.toThrow(/cannot continue/);
      } finally {
        await rt.close();
      }
    },
  );
});

describe('anomaly mode', () => {
  it('names the first node that made a NaN, its microbatch and phase', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3]);
    const h = b.matmul(x, b.param('w', [3, 3], { init: { kind: 'ones' } }));
    // log of a negative sum is NaN, in the forward of this node only for rows with a negative sum.
    const bad = b.name(b.log(h), 'bad');
    b.output('loss', b.mean(b.square(bad)));
    const graph = b.build();
    const data = new Float32Array(12).fill(1);
    data.set([-1, -1, -1], 9); // row 3: the second microbatch of two
    const feeds = { x: new Tensor('float32', [4, 3], data) };
    for (const mode of ['in-process', 'threads', 'loopback'] as const) {
      const rt = await createRuntime(graph, {
        mode,
        workers: 2,
        placement: 'per-node',
        microbatches: 2,
        params: initParams(graph, 0),
        anomaly: true,
      });
      try {
        const err = (await rt.step(feeds).catch((e: unknown) => e)) as NonFiniteError;
        expect(err).toBeInstanceOf(NonFiniteError);
        expect(err.context['anomaly']).toEqual({
          node: 'bad',
          op: 'log',
          microbatch: 1,
          replica: 0,
          phase: 'forward',
        });
        expect(err.message).toMatch(
          /first non-finite value came from bad \(log\) in the forward of microbatch 1/,
        );
      } finally {
        await rt.close();
      }
    }
  });
});
