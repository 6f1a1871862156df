import { describe, expect, it } from 'vitest';
import type { ErrorReport } from '../../src/actor/messages.ts';
import { WorkerError } from '../../src/errors.ts';
import type { Cluster } from '../../src/runtime/cluster.ts';
import { DeferredUpdates } from '../../src/runtime/deferred-update.ts';
import { handleReport, type ReportTarget } from '../../src/runtime/reports.ts';
import type { StepState } from '../../src/runtime/step.ts';
import { scalar } from '../../src/tensor/tensor.ts';

/** A step in flight and a target that records what the handlers ask of the coordinator. */
function fixture(step = 3) {
  const state = {
    step,
    losses: new Map(),
    grads: new Map(),
    inputGrads: new Map(),
    inputReports: 0,
    sumsq: new Map(),
    anomalies: [],
  } as unknown as StepState;
  const updates: number[] = [];
  const cluster = { update: (u: { step: number }) => updates.push(u.step) } as unknown as Cluster;
  const calls: string[] = [];
  const target: ReportTarget = {
    microbatches: 2,
    localUpdates: false,
    inFlight: (s) => (s === state.step ? state : null),
    inference: () => null,
    updates: new DeferredUpdates(cluster, 2, 60_000, () => calls.push('timed out')),
    maybeFinish: () => calls.push('maybeFinish'),
    fail: (error, fatal) => calls.push(`fail ${fatal ? 'fatal' : 'step'}: ${error.message}`),
    refused: (error) => calls.push(`refused: ${error.message}`),
  };
  return { state, target, calls, updates };
}

const error = (phase: ErrorReport['context']['phase']): ErrorReport => ({
  name: 'Error',
  message: 'boom',
  context: { worker: 1, phase },
});

describe('report handlers', () => {
  it('a loss goes to its shard, and the step may finish', () => {
    const { state, target, calls } = fixture();
    handleReport(target, 0, { kind: 'loss', step: 3, mb: 1, replica: 1, value: 0.5 });
    expect([...state.losses]).toEqual([[3, 0.5]]);
    expect(calls).toEqual(['maybeFinish']);
  });

  it('a report of a step no longer in flight is dropped', () => {
    const { state, target, calls } = fixture();
    handleReport(target, 0, { kind: 'gradNorm', step: 2, node: 4, sumsq: 1 });
    handleReport(target, 0, { kind: 'failed', step: 2, error: error('forward') });
    expect(state.sumsq.size).toBe(0);
    expect(calls).toEqual([]);
  });

  it('a second input gradient for a shard is a duplicate: the first one stays', () => {
    const { state, target, calls } = fixture();
    const first = scalar(1);
    handleReport(target, 0, { kind: 'inputGrad', step: 3, mb: 0, replica: 0, node: 2, tensor: first });
    handleReport(target, 0, { kind: 'inputGrad', step: 3, mb: 0, replica: 0, node: 2, tensor: scalar(2) });
    expect(state.inputGrads.get(2)![0]).toBe(first);
    expect(state.inputReports).toBe(1);
    expect(calls).toEqual(['maybeFinish']);
  });

  it("a task's failure fails its step; an update's failure breaks the runtime", async () => {
    const { target, calls, updates } = fixture();
    handleReport(target, 1, { kind: 'failed', step: 3, error: error('backward') });
    target.updates.send({ step: 3, lr: 0.1, scale: 1 });
    const settled = target.updates.settled();
    handleReport(target, 1, { kind: 'failed', step: 3, error: error('update') });
    await settled;
    expect(updates).toEqual([3]);
    expect(calls).toEqual([
      'fail step: Error: boom [worker 1, backward]',
      'fail fatal: Error: boom [worker 1, update]',
    ]);
  });

  it('a refused envelope goes to the runtime whatever step its report names (its host may know none)', () => {
    const { target, calls } = fixture();
    handleReport(target, 1, { kind: 'failed', step: 0, error: error('receive') });
    expect(calls).toEqual(['refused: Error: boom [worker 1, receive]']);
  });

  it('an update settles when every host has acknowledged it', async () => {
    const { target } = fixture();
    target.updates.send({ step: 3, lr: 0.1, scale: 1 });
    let settled = false;
    const done = target.updates.settled().then(() => {
      settled = true;
    });
    handleReport(target, 0, { kind: 'updated', step: 3 });
    await Promise.resolve();
    expect(settled).toBe(false);
    handleReport(target, 1, { kind: 'updated', step: 3 });
    await done;
    expect(settled).toBe(true);
  });

  it('a failed update fails with a WorkerError naming the worker and the phase', () => {
    const { target } = fixture();
    const seen: Error[] = [];
    target.updates.send({ step: 3, lr: 0.1, scale: 1 });
    handleReport({ ...target, fail: (e) => seen.push(e) }, 1, {
      kind: 'failed',
      step: 3,
      error: error('update'),
    });
    expect(seen[0]).toBeInstanceOf(WorkerError);
    expect(seen[0]!.message).toBe('Error: boom [worker 1, update]');
  });
});
