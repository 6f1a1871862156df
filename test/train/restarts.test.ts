// Bounded one-for-all restarts of the Trainer (Note [bounded restarts]): workers killed mid-epoch,
// training going on bitwise as an uninterrupted run, and the intensity limit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Failpoint, FailpointAction } from '../../src/actor/failpoint.ts';
import { Dataset } from '../../src/data/dataset.ts';
import { spirals } from '../../src/data/synthetic.ts';
import { InputError, RestartLimitError, StepTimeoutError, WorkerError } from '../../src/errors.ts';
import { initParams } from '../../src/graph/params.ts';
import type { OptimizerCheckpoint } from '../../src/optim/optimizer.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import {
  type Failure,
  mayRestart,
  type RestartEvent,
  type RestartOptions,
} from '../../src/train/restarts.ts';
import { Trainer, type TrainerOptions } from '../../src/train/trainer.ts';
import { thrown } from '../support/errors.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'backflow-restarts-'));
  dirs.push(dir);
  return dir;
}

// 128 examples in batches of 24: 5 steps an epoch, 15 in 3 epochs.
const spiral = spirals({ perClass: 64, noise: 0.05, seed: 1 });
const data = new Dataset(spiral.x, spiral.y);
const graph = mlpClassifier({ features: 2, hidden: [16], classes: 2, activation: 'tanh' });
const tanh = graph.nodes.find((n) => n.op === 'tanh')!;
const EVERY = 4;

/** A failpoint for a runtime's `step`-th step (runtimes count their steps from 1): replica 1's worker stops there. */
const fault = (step: number, action: FailpointAction = 'exit'): Failpoint => ({
  node: tanh.id,
  phase: 'forward',
  replica: 1,
  mb: 0,
  step,
  action,
});

interface Run {
  losses: number[];
  params: Record<string, Tensor>;
  optimizer: OptimizerCheckpoint;
  events: RestartEvent[];
  warnings: string[];
  error: unknown;
}

/**
 * Trains 3 epochs; `faults[i]` is armed on the i-th runtime (0: the first, i: after restart i), so
 * each new runtime fails where the test says, as a worker dying again would.
 */
async function train(
  options: Partial<TrainerOptions> & { checkpointDir?: string; faults?: readonly Failpoint[] },
): Promise<Run> {
  const { checkpointDir, faults = [], ...rest } = options;
  const warnings: string[] = [];
  const events: RestartEvent[] = [];
  const trainer = new Trainer(graph, {
    workers: 2,
    replicas: 2,
    params: initParams(graph, 3),
    optimizer: { name: 'adam', lr: 0.01 },
    seed: 5,
    onWarning: (m) => void warnings.push(m),
    ...rest,
  });
  const arm = async (i: number) => {
    if (faults[i] !== undefined) await (await trainer.start()).setFailpoints([faults[i]]);
  };
  try {
    await arm(0);
    let error: unknown = null;
    await trainer
      .fit(data, {
        epochs: 3,
        batchSize: 24,
        progress: false,
        ...(checkpointDir !== undefined ? { checkpointDir, checkpointEvery: EVERY } : {}),
        callbacks: {
          onRestart: async (e) => {
            events.push(e);
            await arm(e.restart);
          },
        },
      })
      .catch((e: unknown) => (error = e));
    const losses = trainer.history.steps.map((s) => s.loss);
    if (error !== null)
      return { losses, params: {}, optimizer: { name: '', step: 0, states: {} }, events, warnings, error };
    const runtime = await trainer.start();
    return {
      losses,
      params: await runtime.getParams(),
      optimizer: await runtime.getOptimizerState(),
      events,
      warnings,
      error,
    };
  } finally {
    await trainer.close();
  }
}

function expectSameRun(got: Run, want: Run): void {
  expect(got.error).toBe(null);
  expect(got.losses).toEqual(want.losses);
  expectBitwiseAll(got.params, want.params, 'params.');
  expect(got.optimizer.step).toBe(want.optimizer.step);
  for (const [name, state] of Object.entries(want.optimizer.states)) {
    for (const [key, t] of Object.entries(state))
      expectBitwise(got.optimizer.states[name]![key]!, t, `${name}.${key}`);
  }
}

describe.each(['in-process', 'threads'] as const)('Trainer restarts (%s)', (mode) => {
  const restarts: RestartOptions = { max: 2, withinMs: 3_600_000 };
  let live: number;
  // The oracle: an uninterrupted run with the same checkpoint cadence.
  let straight: Run;
  beforeAll(async () => {
    live = WorkerPool.live;
    straight = await train({ mode, checkpointDir: tempDir() });
    expect(straight.losses).toHaveLength(15);
    expect(straight.optimizer.step).toBe(15);
  });

  it('two workers killed mid-epoch: training finishes bitwise equal to the uninterrupted run', async () => {
    const dir = tempDir();
    // The first runtime dies in step 7 and goes back to the end of epoch 1 (step 5); the second dies
    // in its 5th step (step 10) and goes back to the mid-epoch checkpoint of step 8.
    const run = await train({ mode, restarts, checkpointDir: dir, faults: [fault(7), fault(5)] });
    expectSameRun(run, straight);
    expect(run.events.map(({ cause, ...e }) => e)).toEqual([
      { restart: 1, failedAfter: 6, resumedAt: 5, checkpointDir: dir },
      { restart: 2, failedAfter: 9, resumedAt: 8, checkpointDir: dir },
    ]);
    for (const e of run.events) {
      expect(e.cause).toBeInstanceOf(WorkerError);
      expect(e.cause.message).toMatch(/^worker \d exited unexpectedly \(code 0\) during the forward of node/);
    }
    expect(run.warnings).toEqual([
      expect.stringMatching(
        /^restart 1 \(at most 2 within 3600000 ms\) after step 6: WorkerError: worker \d exited unexpectedly .*; going on from step 5, the checkpoint in /,
      ),
      expect.stringMatching(/^restart 2 .* after step 9: WorkerError: .*; going on from step 8, /),
    ]);
    expect(WorkerPool.live).toBe(live);
  });

  it('a third fault within the window fails the fit with all three causes; a hung worker counts', async () => {
    const run = await train({
      mode,
      restarts,
      stepTimeoutMs: 2_000,
      checkpointDir: tempDir(),
      faults: [fault(2), fault(2, 'hang'), fault(1)],
    });
    expect(run.events).toHaveLength(2);
    expect(run.error).toBeInstanceOf(RestartLimitError);
    const error = run.error as RestartLimitError;
    expect(error.causes.map((c) => c.constructor)).toEqual([WorkerError, StepTimeoutError, WorkerError]);
    expect(error.cause).toBe(error.causes[2]);
    expect(error.context).toMatchObject({ max: 2, withinMs: 3_600_000, faults: 3 });
    expect(error.message).toMatch(
      /^fit: 3 worker faults within 3600000 ms, more than restarts.max = 2 allows; every fault of this fit:\n {2}1\. after step 1: WorkerError: worker \d exited unexpectedly .*\n {2}2\. after step 1: StepTimeoutError: step 2 did not finish within 2000 ms; still missing:\n {2}3\. after step 0: WorkerError: worker \d exited unexpectedly /,
    );
    // The trainer closed the runtime it gave up on.
    expect(WorkerPool.live).toBe(live);
  });
});

describe('Trainer restarts before any checkpoint, and what they do not restart', () => {
  const restarts: RestartOptions = { max: 1, withinMs: 3_600_000 };

  it('without a checkpoint the fit goes back to the state it started from, bitwise', async () => {
    const straight = await train({ mode: 'in-process' });
    const run = await train({ mode: 'in-process', restarts, faults: [fault(9)] });
    expectSameRun(run, straight);
    expect(run.events.map(({ cause, ...e }) => e)).toEqual([
      { restart: 1, failedAfter: 8, resumedAt: 0, checkpointDir: null },
    ]);
    expect(run.warnings[0]).toMatch(/going on from step 0, the state the fit started from$/);
  });

  it('an error that is not a worker fault fails the fit at once', async () => {
    const trainer = new Trainer(graph, { mode: 'in-process', workers: 1, restarts });
    const restarted: RestartEvent[] = [];
    try {
      const boom = new Error('boom');
      const fit = trainer.fit(data, {
        epochs: 1,
        batchSize: 24,
        progress: false,
        callbacks: {
          onStep: () => {
            throw boom;
          },
          onRestart: (e) => void restarted.push(e),
        },
      });
      await expect(fit).rejects.toBe(boom);
      expect(restarted).toEqual([]);
    } finally {
      await trainer.close();
    }
  });

  it.each([
    [{ max: -1, withinMs: 1000 }, /^Trainer: restarts.max: expected an integer >= 0, found -1$/],
    [{ max: 1.5, withinMs: 1000 }, /restarts.max: expected an integer >= 0, found 1.5/],
    [{ max: 2, withinMs: 0 }, /restarts.withinMs: expected a number > 0, found 0/],
    [{ max: 2, withinMs: Number.NaN }, /restarts.withinMs: expected a number > 0, found NaN/],
    [{ max: 2 }, /restarts.withinMs: expected a number > 0, found undefined/],
    [{ max: 2, withinMs: 10, within: 5 }, /restarts.within: expected only max and withinMs, found "within"/],
    [3, /^Trainer: restarts: expected \{ max, withinMs \}, found 3$/],
  ])('restarts %j is refused naming the option', (value, why) => {
    const error = thrown(InputError, () => new Trainer(graph, { restarts: value as RestartOptions }));
    expect(error.message).toMatch(why);
  });
});

describe('restart intensity (pure)', () => {
  const at = (...times: number[]): Failure[] =>
    times.map((t, i) => ({ error: new Error(`${i}`), step: i, at: t }));

  it('more than max failures within the window is one too many; older ones are forgiven', () => {
    const limit = { max: 2, withinMs: 100 };
    expect(mayRestart(at(0), limit)).toBe(true);
    expect(mayRestart(at(0, 50), limit)).toBe(true);
    expect(mayRestart(at(0, 50, 99), limit)).toBe(false);
    expect(mayRestart(at(0, 50, 100), limit)).toBe(true);
    expect(mayRestart(at(0, 50, 100, 120), limit)).toBe(false);
    expect(mayRestart(at(0, 200, 400, 600), limit)).toBe(true);
  });

  it('max 0: the first failure fails', () => {
    expect(mayRestart(at(0), { max: 0, withinMs: 1 })).toBe(false);
  });
});
