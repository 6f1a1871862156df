// Note [parameter placement]: replicated, sharded and replica-0 parameters train bitwise like the
// reference loop, in-process under shuffled delivery, on threads and over byte wires (loopback), with
// and without an optimizer.
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import { PARAM_PLACEMENTS, paramWorkers } from '../../src/partition/plan.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { cast, type Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { mlp, tied } from '../support/models.ts';

const STEPS = 3;
const BATCH = 24;

type Setup = { name: string; model: typeof mlp; options: Omit<RuntimeOptions, 'params' | 'optimizer'> };

const SETUPS: Setup[] = [
  { name: 'MLP, 2 workers, 2 replicas', model: mlp, options: { workers: 2, replicas: 2, microbatches: 2 } },
  { name: 'MLP, 3 workers, 3 replicas', model: mlp, options: { workers: 3, replicas: 3 } },
  // Tied parameters: a parameter read in both stages of a replica, so copies serve remote consumers.
  {
    name: 'tied, 4 workers, 2 replicas of 2 stages, 1F1B',
    model: tied,
    options: { workers: 4, replicas: 2, schedule: '1f1b', microbatches: 2 },
  },
  {
    name: 'MLP, per-node, 4 workers, 2 replicas',
    model: mlp,
    options: { workers: 4, replicas: 2, placement: 'per-node' },
  },
];

/** The reference loop: reference gradients, then the same optimizer on this thread. */
function reference(setup: Setup, spec: OptimizerSpec | null) {
  const model = setup.model();
  const params = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, cast(v)]));
  const run = spec === null ? null : new OptimizerRun(makeOptimizer(spec));
  const steps: { loss: number; grads: Record<string, Tensor> }[] = [];
  for (let s = 0; s < STEPS; s++) {
    const out = referenceStep(model.graph, model.feeds(BATCH, s), params, {
      replicas: setup.options.replicas ?? 1,
      microbatches: setup.options.microbatches ?? 1,
    });
    steps.push(out);
    run?.apply(params, out.grads);
  }
  return { steps, params };
}

describe.each(PARAM_PLACEMENTS)('%s parameters', (paramPlacement) => {
  describe.each(['in-process', 'threads', 'loopback'] as const)('%s', (mode) => {
    it.each(SETUPS.map((s) => [s.name, s] as const))(
      '%s: losses, gradients and parameters bitwise equal to the reference loop',
      async (_, setup) => {
        for (const spec of [{ name: 'sgd', lr: 0.05, momentum: 0.9 } as OptimizerSpec, null]) {
          const ref = reference(setup, spec);
          const model = setup.model();
          const rt = await createRuntime(model.graph, {
            ...setup.options,
            mode,
            paramPlacement,
            // Threads and loopback recycle storages: poisoned, so a storage recycled while still in
            // use (for instance by an update that waited for a replicated copy's last contribution) shows.
            ...(mode === 'in-process' ? { shuffleSeed: 7 } : { pool: { poison: true } }),
            params: model.params,
            ...(spec === null ? {} : { optimizer: spec }),
          });
          try {
            const copies = model.graph.params().map((p) => paramWorkers(rt.plan, p.id).length);
            const replicas = setup.options.replicas!;
            if (paramPlacement === 'replicated') expect(copies).toEqual(copies.map(() => replicas));
            else expect(copies).toEqual(copies.map(() => 1));
            for (let s = 0; s < STEPS; s++) {
              const out = await rt.step(model.feeds(BATCH, s));
              expect(out.loss).toBe(ref.steps[s]!.loss);
              if (spec !== null) continue;
              // Without an optimizer the parameters never change: each step is the reference's first.
              expectBitwiseAll(out.grads, ref.steps[s]!.grads);
            }
            const params = await rt.getParams();
            expectBitwiseAll(params, ref.params);
          } finally {
            await rt.close();
          }
        }
      },
    );
  });
});
