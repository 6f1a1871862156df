// Dropout on the runtime draws referenceStep's masks bit for bit (Note [run context] in
// src/ops/step-key.ts): whatever the placement, worker and replica counts, on threads and in
// process; step after step, and from the step a caller names.
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { InputError } from '../../src/errors.ts';
import type { PlacementStrategy } from '../../src/partition/placement.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { dropoutMlp } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

const model = dropoutMlp();
const feeds = model.feeds(13);

describe('dropout on the runtime: bitwise equal to referenceStep', () => {
  const configs: [PlacementStrategy, number, number][] = [
    ['per-node', 3, 1],
    ['stages', 2, 2],
    ['min-comm', 4, 2],
    ['per-node', 4, 2],
  ];
  it.each(configs)(
    'in-process, %s, %i workers, %i replicas, 3 microbatches',
    async (placement, workers, replicas) => {
      await expectMatchesReference(model.graph, model.params, feeds, {
        mode: 'in-process',
        workers,
        replicas,
        placement,
        microbatches: 3,
        shuffleSeed: workers,
      });
    },
  );

  it.each([
    ['per-node', 3, 1],
    ['stages', 4, 2],
  ] as const)(
    'threads, %s, %i workers, %i replicas, 2 microbatches',
    async (placement, workers, replicas) => {
      await expectMatchesReference(model.graph, model.params, feeds, {
        workers,
        replicas,
        placement,
        microbatches: 2,
      });
    },
  );

  it('loopback (every message, the step start too, through bytes): 3 workers, 2 replicas', async () => {
    await expectMatchesReference(model.graph, model.params, feeds, {
      mode: 'loopback',
      workers: 3,
      replicas: 2,
      placement: 'per-node',
      microbatches: 2,
    });
  });

  it('draws a new mask each step, and the one of the step the caller names', async () => {
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      params: model.params,
      microbatches: 2,
    });
    try {
      const options = { replicas: 2, microbatches: 2 };
      for (const step of [1, 2]) {
        const ref = referenceStep(model.graph, feeds, model.params, { ...options, step });
        const out = await rt.step(feeds);
        expect(out.loss).toBe(ref.loss);
        expectBitwiseAll(out.grads, ref.grads, `step ${step}: `);
      }
      const one = referenceStep(model.graph, feeds, model.params, { ...options, step: 1 });
      const two = referenceStep(model.graph, feeds, model.params, { ...options, step: 2 });
      expect(one.loss).not.toBe(two.loss);
      // A resumed run names its step; the next one counts on from there.
      for (const [given, step] of [
        [41, 41],
        [undefined, 42],
      ] as const) {
        const ref = referenceStep(model.graph, feeds, model.params, { ...options, step });
        const out = await rt.step(feeds, given === undefined ? {} : { step: given });
        expect(out.loss).toBe(ref.loss);
        expectBitwiseAll(out.grads, ref.grads, `step ${step}: `);
      }
      await expect(rt.step(feeds, { step: -1 })).rejects.toThrow(InputError);
      await expect(rt.step(feeds, { step: 1.5 })).rejects.toThrow(/options.step: expected an integer/);
    } finally {
      await rt.close();
    }
  });
});
