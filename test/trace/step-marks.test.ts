// Note [step marks]: a real trace says when each host took the step's start, sent its reports and
// posted and took its envelopes, and when the coordinator started the step and sent its update.
import { describe, expect, it } from 'vitest';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import type { StepMark } from '../../src/trace/trace.ts';
import { mlp } from '../support/models.ts';

/** Two data-parallel steps of the MLP, sharded, traced: the runtime (to close) and the marks of the second. */
async function secondStep(mode: 'threads' | 'loopback') {
  const model = mlp();
  const rt = await createRuntime(model.graph, {
    mode,
    workers: 2,
    replicas: 2,
    params: model.params,
    optimizer: { name: 'sgd', lr: 0.1 },
    trace: true,
  });
  try {
    await rt.step(model.feeds(8));
    const { trace } = await rt.step(model.feeds(8, 4));
    return { rt, marks: trace!.marks! };
  } catch (err) {
    await rt.close();
    throw err;
  }
}

describe.each(['threads', 'loopback'] as const)('step marks, %s', (mode) => {
  it('every host marks its start, its reports and its envelopes; the coordinator its start and update', async () => {
    const { rt, marks } = await secondStep(mode);
    try {
      const of = (worker: number, what: StepMark['what']) =>
        marks.filter((m) => m.worker === worker && m.what === what && m.step === 2);
      // The coordinator: the start, after the trace's origin, then the update once every report is in.
      const [start] = of(COORDINATOR, 'start');
      const [update] = of(COORDINATOR, 'update');
      expect(start!.time).toBeGreaterThanOrEqual(0);
      expect(update!.time).toBeGreaterThan(start!.time);
      for (const w of [0, 1]) {
        expect(of(COORDINATOR, 'post').some((m) => m.peer === w)).toBe(true);
        expect(of(COORDINATOR, 'receive').some((m) => m.peer === w)).toBe(true);
        // Each host: its start, its replica's loss and the sums of squares of the parameters it
        // owns, each sent after the start (one thread's clock), and an envelope to the coordinator.
        const [taken] = of(w, 'start');
        expect(taken!.end).toBeGreaterThanOrEqual(taken!.time);
        const reports = of(w, 'report');
        expect(reports.filter((r) => r.report === 'loss')).toHaveLength(1);
        const owned = [...rt.plan.paramWorkers].filter(([, at]) => at[0] === w).map(([id]) => id);
        expect(
          reports
            .filter((r) => r.report === 'gradNorm')
            .map((r) => r.node)
            .sort(),
        ).toEqual(owned.sort());
        for (const r of reports) expect(r.time).toBeGreaterThanOrEqual(taken!.time);
        expect(of(w, 'post').some((m) => m.peer === COORDINATOR)).toBe(true);
        expect(of(w, 'receive').some((m) => m.peer === COORDINATOR)).toBe(true);
      }
    } finally {
      await rt.close();
    }
  });

  it("a host's loss and sums of squares leave in one envelope, with its last (Note [report cadence])", async () => {
    const { rt, marks } = await secondStep(mode);
    try {
      let spread = 0;
      for (const w of [0, 1]) {
        const reports = marks.filter(
          (m) => m.worker === w && m.what === 'report' && m.step === 2 && m.report !== 'updated',
        );
        const posts = marks.filter((m) => m.worker === w && m.what === 'post' && m.peer === COORDINATOR);
        const [first, last] = [reports[0]!, reports.at(-1)!];
        // The gradients a host reports close in more than one turn (so the reports could spread) ...
        spread += last.time > first.time ? 1 : 0;
        // ... yet none of its envelopes to the coordinator leaves between its first and last report.
        expect(posts.filter((p) => p.time >= first.time && p.time < last.time)).toEqual([]);
        expect(posts.some((p) => p.time >= last.time)).toBe(true);
      }
      expect(spread).toBeGreaterThan(0);
    } finally {
      await rt.close();
    }
  });
});
