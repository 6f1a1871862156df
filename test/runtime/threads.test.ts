import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../src/actor/host.ts';
import { RuntimeClosedError, WorkerError } from '../../src/errors.ts';
import { label } from '../../src/graph/graph.ts';
import { edgeGradient } from '../../src/partition/plan.ts';
import { encodeEnvelope, ROW } from '../../src/protocol/batch.ts';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { threadsClusterOf } from '../../src/runtime/threads.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { smallMlp } from '../fixtures/mlp.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';
import { expectMatchesReference } from '../support/reference.ts';

const { graph, params, feeds } = smallMlp();
const MICROBATCHES = 2;
const options: RuntimeOptions = {
  mode: 'threads',
  workers: 2,
  placement: 'stages',
  microbatches: MICROBATCHES,
  params,
};
const STEP_TIMEOUT_MS = 1500;
/**
 * How long a failure may take to be reported or a close to finish: a deadline against hangs, generous
 * so that a loaded machine does not break it (the error's type shows which mechanism reported it).
 */
const FAILURE_DEADLINE_MS = 10_000;
const ADAM = { name: 'adam', lr: 0.01 } as const;
/** The first layer's matmul: it has a backward (its weight needs a gradient). */
const target = graph.nodes.find((n) => n.op === 'matmul')!;

const expectReference = (runtime: Runtime) => expectMatchesReference(graph, params, feeds, options, runtime);

async function rejection(p: Promise<unknown>): Promise<{ error: Error; ms: number }> {
  const t0 = performance.now();
  const error = await p.then(
    () => new Error('expected a rejection'),
    (e: Error) => e,
  );
  return { error, ms: performance.now() - t0 };
}

/** Resolves after this turn's microtasks (the step's envelopes are flushed by then): not a sleep. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('threads runtime: one pool for the steps that leave it usable', () => {
  let runtime: Runtime;
  const live = WorkerPool.live;
  beforeAll(async () => {
    runtime = await createRuntime(graph, { ...options, stepTimeoutMs: STEP_TIMEOUT_MS });
  });
  afterAll(() => runtime?.close());

  it('gives loss and gradients bitwise equal to the reference with 2 workers, step after step', async () => {
    expect(new Set(runtime.plan.placement[0]!.filter((w) => w >= 0))).toEqual(new Set([0, 1]));
    await expectReference(runtime);
    await expectReference(runtime);
    // The caller's tensors were copied, not transferred away.
    expect(feeds.x!.data.byteLength).toBeGreaterThan(0);
    expect(params['mlp.0.w']!.data.byteLength).toBeGreaterThan(0);
    const got = await runtime.getParams();
    expectBitwiseAll(got, params);
    const stats = await runtime.stats();
    expect(stats.reduce((n, s) => n + s.remoteMessages, 0)).toBeGreaterThan(0);
  });

  it('an op that throws fails the step with its name, message, stack and code; the next step is exact again', async () => {
    await runtime.setFailpoints([{ node: target.id, phase: 'backward', mb: 1, action: 'throw' }]);
    const { error, ms } = await rejection(runtime.step(feeds));
    expect(ms).toBeLessThan(FAILURE_DEADLINE_MS);
    expect(error).toBeInstanceOf(WorkerError);
    const worker = runtime.plan.placement[0]![target.id];
    expect((error as WorkerError).context).toMatchObject({
      worker,
      node: label(target),
      microbatch: 1,
      phase: 'backward',
      op: 'matmul',
    });
    const cause = error.cause as Error & { code?: string; injected?: boolean };
    expect(cause.name).toBe('FailpointError');
    expect(cause.message).toMatch(/failpoint: backward of %\d+ microbatch 1/);
    expect(cause.code).toBe('EFAILPOINT');
    expect(cause.injected).toBe(true);
    expect(cause.stack).toMatch(/host\.ts/);
    await runtime.setFailpoints([]);
    await expectReference(runtime);
  });

  it('a broken envelope fails the step with a ProtocolError naming the edge; the worker lives on', async () => {
    // A backward that sends a gradient to the other worker loses it, so the step waits; then worker 1
    // gets garbage.
    const cut = runtime.plan.crossEdges.find((e) => edgeGradient(runtime.plan, e.to, e.slot))!;
    await runtime.setFailpoints([{ node: cut.to, phase: 'backward', action: 'drop' }]);
    const step = runtime.step(feeds);
    await nextTurn();
    // A well-formed feed, then its node column set out of range.
    const x = feeds.x!;
    const feed = {
      kind: 'feed',
      step: 3,
      mb: 0,
      replica: 0,
      node: 0,
      tensor: new Tensor(x.dtype, x.shape, x.data.slice()),
    } as const;
    const { envelope, transfer } = encodeEnvelope([feed], 0, COORDINATOR, 'test');
    envelope.head[ROW.NODE] = 999;
    threadsClusterOf(runtime.plan)!.postRaw(1, envelope, transfer);
    const { error, ms } = await rejection(step);
    expect(ms).toBeLessThan(FAILURE_DEADLINE_MS);
    expect(error).toBeInstanceOf(WorkerError);
    expect((error.cause as Error).name).toBe('ProtocolError');
    expect(error.message).toMatch(
      /coordinator -> worker 1: envelope: message 0: feed: expected node: an integer in \[0, \d+\), found 999/,
    );
    await runtime.setFailpoints([]);
    await expectReference(runtime);
    // Failed steps changed no parameter.
    const after = await runtime.getParams();
    expectBitwiseAll(after, params);
  });

  it('close() during a step rejects it with RuntimeClosedError; every worker exits within the deadline; close() twice is harmless', async () => {
    // A gradient lost on its way: this step cannot finish.
    const cut = runtime.plan.crossEdges.find((e) => edgeGradient(runtime.plan, e.to, e.slot))!;
    await runtime.setFailpoints([{ node: cut.to, phase: 'backward', action: 'drop' }]);
    const step = runtime.step(feeds);
    await nextTurn();
    const t0 = performance.now();
    await runtime.close();
    const { error } = await rejection(step);
    expect(error).toBeInstanceOf(RuntimeClosedError);
    expect(performance.now() - t0).toBeLessThan(FAILURE_DEADLINE_MS);
    expect(WorkerPool.live).toBe(live);
    await runtime.close();
    await expect(runtime.step(feeds)).rejects.toBeInstanceOf(RuntimeClosedError);
  });
});

describe('threads runtime: a dead worker fails the step and breaks the runtime', () => {
  let paused: Runtime;
  let exiting: Runtime;
  let onPause: (p: { worker: number; task: TaskInfo }) => void;
  const pause = new Promise<{ worker: number; task: TaskInfo }>((resolve) => (onPause = resolve));

  beforeAll(async () => {
    [paused, exiting] = await Promise.all([
      createRuntime(graph, { ...options, onFailpoint: (worker, _, task) => onPause({ worker, task }) }),
      createRuntime(graph, { ...options, optimizer: ADAM }),
    ]);
  });
  afterAll(() => Promise.all([paused?.close(), exiting?.close()]));

  it('a worker terminated from outside in the middle of a backward: rejects within the deadline naming worker, node, microbatch and phase', async () => {
    await paused.setFailpoints([{ node: target.id, phase: 'backward', mb: 1, action: 'pause' }]);
    const step = paused.step(feeds);
    const { worker, task } = await pause;
    expect(task).toMatchObject({ node: target.id, phase: 'backward', mb: 1 });
    const killed = threadsClusterOf(paused.plan)!.killWorker(worker);
    const { error, ms } = await rejection(step);
    await killed;
    expect(ms).toBeLessThan(FAILURE_DEADLINE_MS);
    expect(error).toBeInstanceOf(WorkerError);
    expect(error.message).toMatch(
      new RegExp(
        `^worker ${worker} exited unexpectedly \\(code 1\\) during the backward of node ${label(target)} \\(matmul\\), replica 0, microbatch 1`,
      ),
    );
    expect((error as WorkerError).context).toMatchObject({
      worker,
      node: label(target),
      microbatch: 1,
      phase: 'backward',
      exitCode: 1,
    });
    // The runtime is broken for good: control calls to the dead worker reject at once, steps too.
    const params = await rejection(paused.getParams());
    expect(params.error).toBeInstanceOf(WorkerError);
    expect(params.error.message).toMatch(
      /^getParams: the runtime failed earlier and cannot continue: worker \d exited unexpectedly/,
    );
    expect(params.ms).toBeLessThan(FAILURE_DEADLINE_MS);
    await expect(paused.step(feeds)).rejects.toThrow(/failed earlier and cannot continue/);
  });

  it('with the optimizer on the workers, parameters and optimizer state match the in-process runtime bit for bit', async () => {
    const local = await createRuntime(graph, { ...options, mode: 'in-process', optimizer: ADAM });
    try {
      for (let i = 0; i < 2; i++)
        expect((await exiting.step(feeds)).loss).toBe((await local.step(feeds)).loss);
      const [got, want] = [await exiting.getParams(), await local.getParams()];
      for (const name of Object.keys(params)) expectBitwise(got[name]!, want[name]!, name);
      const [state, expected] = [await exiting.getOptimizerState(), await local.getOptimizerState()];
      expect(state.step).toBe(2);
      expect(Object.keys(state.states).sort()).toEqual(Object.keys(expected.states).sort());
      for (const [name, tensors] of Object.entries(expected.states)) {
        for (const [k, t] of Object.entries(tensors))
          expectBitwise(state.states[name]![k]!, t, `${name}.${k}`);
      }
      // Restored state travels back to the owners: the next update is the same on both.
      await exiting.setOptimizerState(expected);
      expect((await exiting.step(feeds)).loss).toBe((await local.step(feeds)).loss);
    } finally {
      await local.close();
    }
  });

  it('process.exit(0) in a worker (failpoint exit) is a failure naming what it was doing', async () => {
    await exiting.setFailpoints([{ node: target.id, phase: 'forward', mb: 0, action: 'exit' }]);
    const { error, ms } = await rejection(exiting.step(feeds));
    expect(ms).toBeLessThan(FAILURE_DEADLINE_MS);
    expect(error).toBeInstanceOf(WorkerError);
    const worker = exiting.plan.placement[0]![target.id];
    expect((error as WorkerError).context).toMatchObject({
      worker,
      exitCode: 0,
      node: label(target),
      microbatch: 0,
      phase: 'forward',
    });
  });
});

/** Runs test/fixtures/exit-by-itself.ts as `how`; a child that does not exit by itself is killed after 20 s. */
async function exitByItself(how: string) {
  const script = fileURLToPath(new URL('../fixtures/exit-by-itself.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, how], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let closedAt = 0;
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('closed')) closedAt ||= performance.now();
  });
  child.stderr.on('data', (d) => (err += d));
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(guard);
  return { code, out, err, closedAt, exitedAt: performance.now() };
}

describe('threads runtime: process exit', () => {
  it('a process that starts a runtime, runs a step and closes it exits by itself', async () => {
    const { code, out, err, closedAt, exitedAt } = await exitByItself('close');
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/^closed true/);
    expect(exitedAt - closedAt).toBeLessThan(FAILURE_DEADLINE_MS);
  });

  it('a runtime never closed, once its step and its update are done, lets the process exit (code 0)', async () => {
    const { code, out, err } = await exitByItself('open');
    expect(err).toBe('');
    expect(out).toBe('open 6 parameters\n');
    expect(code).toBe(0);
  });

  it('so does a Trainer never closed, after its fit', async () => {
    const { code, out, err } = await exitByItself('trainer');
    expect(err).toBe('');
    expect(out).toBe('fitted 3 steps\n');
    expect(code).toBe(0);
  });
});
