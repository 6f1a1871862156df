// Note [local update]: where every worker holds a copy of every parameter, each host decides and
// applies the step's update itself: bitwise the reference loop's, with clipping and a schedule, the
// same verdict as the coordinator's on a non-finite loss or gradient (another replica's included),
// and fail-stop when a step fails after a host applied its update.
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { NonFiniteError, WorkerError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { clipGlobalNorm } from '../../src/optim/clip.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import { compile } from '../../src/partition/plan.ts';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { stepRules } from '../../src/runtime/step.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { mlp } from '../support/models.ts';

const SGD: OptimizerSpec = { name: 'sgd', lr: 0.1 };

describe('which plans decide their updates on the hosts', () => {
  const model = mlp();
  const rules = (options: Parameters<typeof compile>[1], runtime: Partial<RuntimeOptions> = {}) =>
    stepRules(compile(model.graph, options), { optimizer: SGD, updates: 'local', ...runtime }).localUpdates;
  it('every parameter on every worker, no input in wrt: yes; otherwise the coordinator decides', () => {
    expect(rules({ workers: 1 })).toBe(true);
    expect(rules({ workers: 2, replicas: 2, paramPlacement: 'replicated' })).toBe(true);
    expect(rules({ workers: 3, replicas: 3, paramPlacement: 'replicated' })).toBe(true);
    expect(rules({ workers: 2, replicas: 2, paramPlacement: 'sharded' })).toBe(false);
    expect(rules({ workers: 4, replicas: 2, paramPlacement: 'replicated' })).toBe(false);
    expect(rules({ workers: 1, wrt: ['w1', 'b1', 'w2', 'b2', 'w3', 'b3', 'x'] })).toBe(false);
    expect(rules({ workers: 1 }, { updates: 'coordinator' })).toBe(false);
    expect(rules({ workers: 1 }, { updates: undefined })).toBe(true);
    expect(rules({ workers: 1 }, { optimizer: undefined })).toBe(false);
  });
});

/** The reference loop: reference gradients, clipping, the rate of `lr(update)`, the same optimizer. */
function reference(spec: OptimizerSpec, steps: number, clipNorm: number, lr: (u: number) => number) {
  const model = mlp();
  const params = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, cast(v)]));
  const run = new OptimizerRun(makeOptimizer(spec));
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { loss, grads } = referenceStep(model.graph, model.feeds(24, s), params, {
      replicas: 2,
      microbatches: 2,
    });
    losses.push(loss);
    run.apply(params, clipGlobalNorm(grads, clipNorm).grads, lr(s + 1));
  }
  return { losses, params };
}

describe.each([
  ['in-process, shuffled', { mode: 'in-process', shuffleSeed: 5 }],
  ['threads', { mode: 'threads' }],
  ['loopback', { mode: 'loopback' }],
] as const)('local updates, %s', (_, mode) => {
  it.each([
    { name: 'sgd', lr: 0.1, momentum: 0.9 },
    { name: 'adam', lr: 0.01 },
  ] as OptimizerSpec[])(
    '$name: bitwise the reference loop, with clipping and a schedule; no update sent',
    async (spec) => {
      const model = mlp();
      const lrSchedule = (u: number) => 0.05 / u;
      const ref = reference(spec, 3, 0.5, lrSchedule);
      const rt = await createRuntime(model.graph, {
        ...mode,
        workers: 2,
        replicas: 2,
        microbatches: 2,
        paramPlacement: 'replicated',
        updates: 'local',
        params: model.params,
        optimizer: spec,
        clipNorm: 0.5,
        lrSchedule,
        trace: true,
      });
      try {
        for (let s = 0; s < 3; s++) {
          const out = await rt.step(model.feeds(24, s));
          expect(out.loss).toBe(ref.losses[s]);
          expect(out.lr).toBe(lrSchedule(s + 1));
          // The coordinator (whose marks the linked clusters record) sent no update.
          expect(out.trace!.marks!.filter((m) => m.worker === COORDINATOR && m.what === 'update')).toEqual(
            [],
          );
        }
        expectBitwiseAll(await rt.getParams(), ref.params);
        expect((await rt.getOptimizerState()).step).toBe(3);
      } finally {
        await rt.close();
      }
    },
  );
});

/** The MLP with a second input added to the loss: an infinity there makes the loss, not the gradients, non-finite. */
function offsetLoss() {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  const y = b.input('y', ['B']);
  const h = b.tanh(
    b.add(b.matmul(x, b.param('w1', [4, 8])), b.param('b1', [8], { init: { kind: 'zeros' } })),
  );
  const logits = b.matmul(h, b.param('w2', [8, 3]));
  b.output('loss', b.add(b.softmaxCrossEntropy(logits, y), b.sum(b.input('offset', ['B']))));
  const graph = b.build();
  return { graph, params: initParams(graph, 11) };
}

describe('local updates: the verdict on a non-finite step is the coordinator’s', () => {
  const feeds = (poison: 'offset' | 'x' | null) => {
    const rng = new Rng(3);
    const x = rng.normalTensor([8, 4]);
    const offset = tensor(new Array(8).fill(0));
    // Replica 1's shard (rows 4..7): its host's loss reaches replica 0's host as a message.
    if (poison === 'offset') offset.data[6] = Number.POSITIVE_INFINITY;
    if (poison === 'x') x.data[5 * 4] = Number.NaN;
    return { x, offset, y: tensor(Array.from({ length: 8 }, () => rng.int(3))) };
  };
  it.each([
    ['threads', 'offset'],
    ['threads', 'x'],
    ['in-process', 'offset'],
  ] as const)(
    '%s, a non-finite %s in the other replica: rejected or skipped, nothing applied',
    async (mode, poison) => {
      const model = offsetLoss();
      for (const nonFinite of ['error', 'skip'] as const) {
        const rt = await createRuntime(model.graph, {
          mode,
          workers: 2,
          replicas: 2,
          paramPlacement: 'replicated',
          updates: 'local',
          params: model.params,
          optimizer: SGD,
          nonFinite,
        });
        try {
          if (nonFinite === 'error') await expect(rt.step(feeds(poison))).rejects.toThrow(NonFiniteError);
          else expect((await rt.step(feeds(poison))).skipped).toBe(true);
          expectBitwiseAll(await rt.getParams(), model.params);
          // The runtime goes on: a clean step updates every copy alike.
          const out = await rt.step(feeds(null));
          expect(out.skipped).toBe(false);
          expect(rt.updateCount).toBe(1);
          const ref: Record<string, Tensor> = Object.fromEntries(
            Object.entries(model.params).map(([k, v]) => [k, cast(v)]),
          );
          new OptimizerRun(makeOptimizer(SGD)).apply(
            ref,
            referenceStep(model.graph, feeds(null), ref, { replicas: 2 }).grads,
          );
          expectBitwiseAll(await rt.getParams(), ref);
        } finally {
          await rt.close();
        }
      }
    },
  );
});

describe('local updates stay fail-stop', () => {
  it('a step that fails after one host applied its update breaks the runtime', async () => {
    const model = mlp();
    // The first layer's matmul: its backward in replica 1 makes w1's contribution, sent to worker 0.
    const w1 = model.graph.nodes.find((n) => n.name === 'w1')!.id;
    const matmul = model.graph.nodes.find((n) => n.op === 'matmul' && n.inputs.includes(w1))!.id;
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      paramPlacement: 'replicated',
      updates: 'local',
      params: model.params,
      optimizer: SGD,
      stepTimeoutMs: 1000,
    });
    try {
      await rt.step(model.feeds(8));
      // Worker 1 keeps its own contribution and gets worker 0's: it decides and applies step 2's
      // update. Worker 0 never gets worker 1's, so w1's sum of squares never reaches the coordinator.
      await rt.setFailpoints([{ node: matmul, phase: 'backward', replica: 1, step: 2, action: 'drop' }]);
      await expect(rt.step(model.feeds(8, 4))).rejects.toThrow(/did not finish/);
      const err = await rt.getParams().then(
        () => null,
        (e: unknown) => e as WorkerError,
      );
      expect(err).toBeInstanceOf(WorkerError);
      expect(err!.message).toMatch(/step 2 failed after worker 1 applied its update/);
    } finally {
      await rt.close();
    }
  });

  it('a failed update breaks the runtime, and the next call names it', async () => {
    const model = mlp();
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      paramPlacement: 'replicated',
      updates: 'local',
      params: model.params,
      optimizer: SGD,
    });
    try {
      await rt.setFailpoints([{ node: 'w2', phase: 'update', action: 'throw', worker: 1 }]);
      // The step itself may resolve first: the host decides as soon as it has what it needs.
      await rt.step(model.feeds(8)).catch(() => {});
      await expect(rt.getParams()).rejects.toThrow(/FailpointError: failpoint: update of w2/);
    } finally {
      await rt.close();
    }
  });
});
