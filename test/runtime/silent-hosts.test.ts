// Note [silent hosts]: a host that does not answer after a step's deadline is stopped and breaks the
// runtime, so that later calls reject at once naming the cause instead of waiting out the deadline.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StepTimeoutError, WorkerError } from '../../src/errors.ts';
import { label } from '../../src/graph/graph.ts';
import { edgeGradient } from '../../src/partition/plan.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { createRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import { smallMlp } from '../fixtures/mlp.ts';
import { rejected } from '../support/errors.ts';

const { graph, params, feeds } = smallMlp();
/** The first layer's matmul. */
const target = graph.nodes.find((n) => n.op === 'matmul')!;
const STEP_TIMEOUT_MS = 1000;

let runtime: Runtime | null = null;
afterEach(() => runtime?.close());

describe.each(['threads', 'loopback', 'in-process'] as const)('%s', (mode) => {
  const start = () =>
    createRuntime(graph, { mode, workers: 2, microbatches: 2, params, stepTimeoutMs: STEP_TIMEOUT_MS });

  it('a hung worker: the step rejects naming it, it is stopped, and later calls reject at once with the cause', async () => {
    const live = WorkerPool.live;
    runtime = await start();
    const worker = runtime.plan.placement[0]![target.id]!;
    await runtime.setFailpoints([{ node: target.id, phase: 'forward', mb: 0, action: 'hang' }]);
    const timeout = await rejected(StepTimeoutError, runtime.step(feeds));
    expect(timeout.message).toMatch(/^step 1 did not finish within 1000 ms; still missing:/);
    expect(timeout.message).toMatch(
      new RegExp(`worker ${worker} did not answer waiting.*during the forward of node ${label(target)}`),
    );
    expect(timeout.message).toMatch(
      new RegExp(`\\nworker ${worker} did not answer and is stopped: the runtime cannot continue$`),
    );
    expect(timeout.context).toMatchObject({ step: 1, silent: [worker] });
    // The hung thread is terminated; the other runs until close.
    if (mode === 'threads') await vi.waitFor(() => expect(WorkerPool.live).toBe(live + 1));
    // Broken: a step rejects without waiting for a deadline (that would be a StepTimeoutError), as do
    // the calls that read parameters.
    const next = await rejected(WorkerError, runtime.step(feeds));
    expect(next.message).toMatch(
      /^step: the runtime failed earlier and cannot continue: step 1 did not finish/,
    );
    expect(next.cause).toBe(timeout);
    await rejected(WorkerError, runtime.getParams());
    await runtime.close();
    expect(WorkerPool.live).toBe(live);
  });

  it('a lost message: every host answers, so only the step fails and the next one runs', async () => {
    runtime = await start();
    const cut = runtime.plan.crossEdges.find((e) => edgeGradient(runtime!.plan, e.to, e.slot))!;
    await runtime.setFailpoints([{ node: cut.to, phase: 'backward', action: 'drop' }]);
    const timeout = await rejected(StepTimeoutError, runtime.step(feeds));
    expect(timeout.message).not.toMatch(/stopped/);
    expect(timeout.context).toMatchObject({ silent: [] });
    await runtime.setFailpoints([]);
    expect(Number.isFinite((await runtime.step(feeds)).loss)).toBe(true);
  });
});
