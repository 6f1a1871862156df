// Note [refused envelopes]: a garbage envelope fails the step in flight with the refusal itself,
// naming the edge and what was wrong, whatever step its host last started; between steps, the next.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkerError } from '../../src/errors.ts';
import type { LinkedCluster } from '../../src/runtime/linked-cluster.ts';
import { createRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import { smallMlp } from '../fixtures/mlp.ts';
import { rejected } from '../support/errors.ts';
import { expectMatchesReference } from '../support/reference.ts';

const { graph, params, feeds } = smallMlp();
/** Too short to be a frame: refused before anything else is read. */
const garbage = () => new Uint8Array([1, 2, 3]);
const REFUSAL =
  /^ProtocolError: coordinator -> worker 1: envelope: frame: expected 8 bytes for the magic and the version, found 3 bytes \(truncated\) \[worker 1, receive\]$/;

let runtime: Runtime | null = null;
afterEach(() => runtime?.close());

describe.each(['threads', 'loopback'] as const)('%s', (mode) => {
  const options = { mode, workers: 2, microbatches: 2, params };
  const start = async () => {
    runtime = await createRuntime(graph, options);
    return { runtime, cluster: (runtime as unknown as { cluster: LinkedCluster }).cluster };
  };

  it('garbage that reaches a host before its first start fails the step with the refusal, not a malformed report', async () => {
    const { runtime, cluster } = await start();
    const step = runtime.step(feeds);
    // Posted now, it arrives before the step's start.
    cluster.postRaw(1, garbage());
    const err = await rejected(WorkerError, step);
    expect(err.message).toMatch(REFUSAL);
    expect(err.context).toMatchObject({ worker: 1, phase: 'receive' });
    expect((err.cause as Error).name).toBe('ProtocolError');
    await expectMatchesReference(graph, params, feeds, options, runtime);
  });

  it('garbage that reaches a host before a later start fails that step (the report names the last one)', async () => {
    const { runtime, cluster } = await start();
    await expectMatchesReference(graph, params, feeds, options, runtime);
    const step = runtime.step(feeds);
    cluster.postRaw(1, garbage());
    expect((await rejected(WorkerError, step)).message).toMatch(REFUSAL);
    await expectMatchesReference(graph, params, feeds, options, runtime);
  });

  it('garbage between steps fails the next step', async () => {
    const { runtime, cluster } = await start();
    await expectMatchesReference(graph, params, feeds, options, runtime);
    cluster.postRaw(1, garbage());
    await vi.waitFor(() => expect((runtime as unknown as { refusal: Error | null }).refusal).not.toBeNull());
    expect((await rejected(WorkerError, runtime.step(feeds))).message).toMatch(REFUSAL);
    await expectMatchesReference(graph, params, feeds, options, runtime);
  });
});
