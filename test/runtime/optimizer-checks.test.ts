// Learning rates and optimizer options a worker could not use are refused by the coordinator, with
// what was expected and found; an update a worker refuses anyway breaks the runtime at the next call
// with the worker's own error (Note [deferred update]), rather than waiting for an acknowledgement.
import { describe, expect, it } from 'vitest';
import type { StepUpdate } from '../../src/actor/messages.ts';
import { InputError, WorkerError } from '../../src/errors.ts';
import type { OptimizerSpec } from '../../src/optim/spec.ts';
import type { Cluster } from '../../src/runtime/cluster.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { bitwiseEqual, type Tensor } from '../../src/tensor/tensor.ts';
import { rejected } from '../support/errors.ts';
import { mlp } from '../support/models.ts';

const model = mlp();
const feeds = model.feeds(8);
const MODES = ['in-process', 'threads'] as const;

function start(mode: (typeof MODES)[number], options: Partial<RuntimeOptions> = {}): Promise<Runtime> {
  return createRuntime(model.graph, {
    mode,
    workers: 2,
    params: model.params,
    optimizer: { name: 'sgd', lr: 0.1, momentum: 0.9 },
    ...options,
  });
}

function expectParams(actual: Record<string, Tensor>, expected: Record<string, Tensor>): void {
  for (const [name, t] of Object.entries(expected)) expect(bitwiseEqual(actual[name]!, t), name).toBe(true);
}

/** A spec as a test name: JSON would show NaN and the infinities as null. */
const fmt = (spec: object) =>
  Object.entries(spec)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`)
    .join(', ');

describe('createRuntime checks the optimizer before any worker starts', () => {
  it.each(
    (
      [
        [{ name: 'sgd', lr: Number.NaN }, /optimizer: sgd lr: expected a finite number >= 0, found NaN/],
        [
          { name: 'sgd', lr: Number.POSITIVE_INFINITY },
          /sgd lr: expected a finite number >= 0, found Infinity/,
        ],
        [{ name: 'sgd', lr: -0.1 }, /sgd lr: expected a finite number >= 0, found -0.1/],
        [{ name: 'sgd', lr: '0.1' }, /sgd lr: expected a finite number >= 0, found "0.1"/],
        [{ name: 'sgd', lr: 0.1, momentum: Number.NaN }, /sgd momentum: expected a finite number >= 0/],
        [{ name: 'sgd', lr: 0.1, dampening: 2 }, /sgd dampening: expected a number in \[0, 1\], found 2/],
        [{ name: 'sgd', lr: 0.1, nesterov: 1 }, /sgd nesterov: expected a boolean, found 1/],
        [{ name: 'sgd', lr: 0.1, nesterov: true }, /sgd nesterov: expected a momentum > 0 and no dampening/],
        [{ name: 'sgd', lr: 0.1, weightDecay: -1 }, /sgd weightDecay: expected a finite number >= 0/],
        [{ name: 'sgd', lr: 0.1, momentun: 0.9 }, /sgd has no option 'momentun' \(expected lr, momentum,/],
        [{ name: 'adam', beta1: 1 }, /adam beta1: expected a number in \[0, 1\), found 1/],
        [{ name: 'adam', beta1: -0.1 }, /adam beta1: expected a number in \[0, 1\), found -0.1/],
        [{ name: 'adamw', beta2: 1.5 }, /adamw beta2: expected a number in \[0, 1\), found 1.5/],
        [{ name: 'adam', beta2: Number.NaN }, /adam beta2: expected a number in \[0, 1\), found NaN/],
        [{ name: 'adamw', eps: -1e-8 }, /adamw eps: expected a finite number >= 0/],
        [{ name: 'adamw', lr: null }, /adamw lr: expected a finite number >= 0, found null/],
        [{ name: 'rmsprop', lr: 0.1 }, /unknown optimizer "rmsprop" \(expected one of sgd, adam, adamw\)/],
      ] as const
    ).map(([spec, message]) => [fmt(spec), spec, message] as const),
  )('{%s}', async (_, spec, message) => {
    const live = WorkerPool.live;
    const err = await rejected(InputError, start('threads', { optimizer: spec as unknown as OptimizerSpec }));
    expect(err.message).toMatch(/^createRuntime: optimizer: /);
    expect(err.message).toMatch(message);
    expect(WorkerPool.live).toBe(live);
  });

  it('and the clipping norm', async () => {
    for (const clipNorm of [Number.NaN, -1, 0]) {
      const err = await rejected(InputError, start('threads', { clipNorm }));
      expect(err.message).toMatch(/^createRuntime: clipNorm: expected a finite number > 0, found/);
    }
  });
});

describe.each(MODES)('%s: a step whose learning rate is not a finite number >= 0', (mode) => {
  it('given to step: rejects, changes no parameter, and the runtime goes on', async () => {
    const rt = await start(mode);
    try {
      for (const lr of [Number.NaN, Number.POSITIVE_INFINITY, -0.1, '0.1' as unknown as number]) {
        const err = await rejected(InputError, rt.step(feeds, { lr }));
        expect(err.message).toMatch(/^step: options\.lr: lr: expected a finite number >= 0, found/);
      }
      expectParams(await rt.getParams(), model.params);
      expect((await rt.step(feeds, { lr: 0.05 })).lr).toBe(0.05);
      expect(rt.updateCount).toBe(1);
    } finally {
      await rt.close();
    }
  });

  it('from the schedule: the step rejects naming the update, its parameters stay, the runtime goes on', async () => {
    const rt = await start(mode, { lrSchedule: (update) => (update === 2 ? Number.NaN : 0.1) });
    try {
      await rt.step(feeds);
      const before = await rt.getParams();
      const err = await rejected(InputError, rt.step(model.feeds(8, 4)));
      expect(err.message).toMatch(/^step 2: lrSchedule\(2\): lr: expected a finite number >= 0, found NaN/);
      expectParams(await rt.getParams(), before);
      expect(rt.updateCount).toBe(1);
      // The workers dropped the refused step's gradients: a step with its own rate updates as usual.
      const out = await rt.step(feeds, { lr: 0.1 });
      expect(out.lr).toBe(0.1);
      expect(rt.updateCount).toBe(2);
      const after = await rt.getParams();
      expect(Object.keys(before).some((name) => !bitwiseEqual(after[name]!, before[name]!))).toBe(true);
    } finally {
      await rt.close();
    }
  });
});

describe.each(MODES)('%s: an update the workers refuse', (mode) => {
  it.each([Number.NaN, -1])('(lr %s) breaks the runtime at the next call with the refusal', async (lr) => {
    // Without a waiting deadline of its own: the refusal must arrive, not an acknowledgement timeout.
    const rt = await start(mode, { stepTimeoutMs: 10_000 });
    try {
      // A coordinator that sends a rate it should not (its own checks are bypassed here).
      const cluster = (rt as unknown as { cluster: Cluster }).cluster;
      const update = cluster.update.bind(cluster);
      cluster.update = (u: StepUpdate) => update({ ...u, lr });
      await rt.step(feeds);
      const err = await rejected(WorkerError, rt.getParams());
      expect(err.message).toMatch(/^getParams: the runtime failed earlier and cannot continue: /);
      // Threads refuse a non-finite rate when they decode the update; every host checks the rate.
      expect(err.message).toMatch(
        Number.isNaN(lr) && mode === 'threads'
          ? /ProtocolError: coordinator -> worker \d: .*update: expected lr: a finite number, found NaN/
          : new RegExp(`InputError: host \\d: update: lr: expected a finite number >= 0, found ${lr}`),
      );
      expect(err.context).toMatchObject({ phase: 'update', step: 1 });
      await expect(rt.step(feeds)).rejects.toThrow(/cannot continue/);
    } finally {
      await rt.close();
    }
  });
});
