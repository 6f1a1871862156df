// Credits per channel (Note [activation credits]) and the memory budget of a host (Note [memory
// budget]), on hosts driven by hand: a consumer that runs no task at all is the slowest consumer
// there is, and what waits at it stays within its window; results stay bitwise equal to the
// reference step.
import { describe, expect, it } from 'vitest';
import { Host, type HostLimits, type Message } from '../../src/actor/host.ts';
import type { Credit, Report, StepStart } from '../../src/actor/messages.ts';
import { referenceStep, splitBatch } from '../../src/autodiff/microbatch.ts';
import { sumOfSquares } from '../../src/optim/spec.ts';
import { channels } from '../../src/partition/channels.ts';
import { type CompileOptions, compile, type Plan } from '../../src/partition/plan.ts';
import { hostActions } from '../../src/runtime/pipeline.ts';
import type { ScheduleKind } from '../../src/schedule/config.ts';
import { generatePlacedSchedule } from '../../src/schedule/generators.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { deepMlp, type Model, mlp } from '../support/models.ts';

const BATCH = 16;
const COORDINATOR = -1;

interface Envelope {
  readonly to: number;
  readonly from: number;
  readonly message: Message | Credit;
}

/** Hosts and the messages between them, every move made by the test; credits go back to their sender. */
class Wires {
  readonly hosts: Host[];
  readonly pending: Envelope[] = [];
  readonly reports: Report[] = [];

  constructor(
    readonly plan: Plan,
    model: Model,
    limits: HostLimits,
  ) {
    const values = new Map(plan.graph.params().map((n) => [n.id, cast(model.params[n.name!]!)]));
    this.hosts = Array.from({ length: plan.workers }, (_, w) => new Host(plan, w, values, { limits }));
  }

  perform(from: number, effects: ReturnType<Host['run']>): void {
    for (const e of effects) {
      if (e.kind === 'send') this.pending.push({ to: e.worker, from, message: e.message });
      else if (e.kind === 'credit') this.pending.push({ to: e.worker, from, message: e.credit });
      else if (e.kind === 'report') this.reports.push(e.report);
    }
  }

  start(model: Model, microbatches: number): StepStart {
    const shards = splitBatch(this.plan.graph, model.feeds(BATCH), { replicas: 1, microbatches });
    const start: StepStart = {
      step: 1,
      microbatches,
      shards: shards.map((s) => ({ replica: 0, mb: s.mb, bindings: [...s.bindings], scale: s.scale })),
    };
    for (const [w, host] of this.hosts.entries()) this.perform(w, host.startStep(start));
    for (const s of shards)
      for (const input of this.plan.graph.inputs()) {
        const tensor = s.feeds[input.name!]!;
        const message = { kind: 'feed', step: 1, mb: s.mb, replica: 0, node: input.id, tensor } as const;
        this.pending.push({ to: this.plan.placement[0]![input.id]!, from: COORDINATOR, message });
      }
    return start;
  }

  /**
   * Delivers messages and runs tasks (in a random order with `rng`) until nothing is left to do but
   * the tasks of the `held` hosts, which take their messages and run nothing. Calls `after` after
   * every move.
   */
  run(options: { held?: readonly number[]; rng?: Rng; after?: () => void } = {}): void {
    const held = options.held ?? [];
    for (;;) {
      const busy = this.hosts.filter((h, w) => !held.includes(w) && h.next() !== null);
      if (this.pending.length === 0 && busy.length === 0) return;
      const pick = options.rng?.int(this.pending.length + busy.length) ?? 0;
      if (pick < this.pending.length) {
        const [{ to, from, message }] = this.pending.splice(pick, 1) as [Envelope];
        if (message.kind === 'credit') this.hosts[to]!.credit(from, message);
        else this.perform(to, this.hosts[to]!.deliver(message));
      } else {
        const host = busy[pick - this.pending.length]!;
        this.perform(host.worker, host.run());
      }
      options.after?.();
    }
  }

  /** Loss and gradients from the reports, as the coordinator sums them. */
  result(start: StepStart): { loss: number; grads: Record<string, Tensor> } {
    let loss = 0;
    const grads: Record<string, Tensor> = {};
    const losses = new Map<number, number>();
    const sums = new Map<string, number>();
    for (const r of this.reports) {
      if (r.kind === 'loss') losses.set(r.mb, r.value);
      else if (r.kind === 'grad') grads[this.plan.graph.nodes[r.node]!.name!] = r.tensor;
      else if (r.kind === 'gradNorm') sums.set(this.plan.graph.nodes[r.node]!.name!, r.sumsq);
      else expect.fail(`unexpected report ${JSON.stringify(r)}`);
    }
    // Each gradient's sum of squares comes from its host (Note [global norm order]).
    for (const [name, g] of Object.entries(grads)) expect(sums.get(name)).toBe(sumOfSquares(g));
    for (let mb = 0; mb < start.microbatches; mb++) loss += losses.get(mb)! * start.shards[mb]!.scale;
    return { loss, grads };
  }
}

/** Bytes of one microbatch on each channel into `worker` (one replica, every shard the same size). */
function channelBytes(plan: Plan, worker: number, rows: number): number[] {
  return channels(plan)
    .filter((c) => c.to === worker)
    .map((c) =>
      c.nodes.reduce((n, id) => {
        const node = plan.graph.nodes[id]!;
        return n + node.shape.reduce<number>((p, d) => p * (typeof d === 'number' ? d : rows), 1) * 4;
      }, 0),
    );
}

const NO_LIMITS: HostLimits = { memoryBytes: Number.POSITIVE_INFINITY, flow: null };
/** One microbatch per channel: every window is the floor. */
const ONE_MICROBATCH: HostLimits = {
  memoryBytes: Number.POSITIVE_INFINITY,
  flow: { windowBytes: 1, minWindow: 1 },
};

function pipeline(
  compileOptions: CompileOptions,
  schedule: ScheduleKind | null,
  microbatches: number,
  chunks = 1,
) {
  const model = deepMlp(4);
  const plan = compile(model.graph, compileOptions);
  const actions =
    schedule === null
      ? null
      : hostActions(
          plan,
          generatePlacedSchedule(schedule, { workers: plan.group, microbatches, chunks }).schedule,
        );
  return { model, plan, actions };
}

describe('credits: a consumer that runs nothing', () => {
  it.each([null, 'gpipe'] as const)('%s: the producer stops after one microbatch per channel', (schedule) => {
    const m = 8;
    const { model, plan, actions } = pipeline({ workers: 2 }, schedule, m);
    const [bytes] = channelBytes(plan, 1, BATCH / m);
    for (const [limits, queued] of [
      [NO_LIMITS, m * bytes!],
      [ONE_MICROBATCH, bytes!],
    ] as const) {
      const wires = new Wires(plan, model, limits);
      if (actions !== null) for (const [w, h] of wires.hosts.entries()) h.setSchedule(actions[w]!);
      const start = wires.start(model, m);
      wires.run({ held: [1] });
      // Without credits every microbatch waits at worker 1; with them, one.
      expect(wires.hosts[1]!.stats.queuedBytes).toBe(queued);
      wires.run({
        rng: new Rng(7),
        after: () => expect(wires.hosts[1]!.stats.queuedBytes).toBeLessThanOrEqual(queued),
      });
      expect(wires.hosts[1]!.stats.peakQueuedBytes).toBe(queued);
      expect(wires.hosts[1]!.stats.queuedBytes).toBe(0);
      const ref = referenceStep(model.graph, model.feeds(BATCH), model.params, { microbatches: m });
      const got = wires.result(start);
      expect(got.loss).toBe(ref.loss);
      expectBitwiseAll(got.grads, ref.grads, 'gradient of ');
    }
  });
});

describe('credits under every schedule: no deadlock, bitwise equal, queues within the windows', () => {
  const CASES: [string, CompileOptions, ScheduleKind | null, number][] = [
    ['dataflow, per node over 2 workers', { workers: 2, placement: 'per-node' }, null, 1],
    ['1F1B, 2 stages', { workers: 2 }, '1f1b', 1],
    ['ZB-H1, 2 stages', { workers: 2 }, 'zb-h1', 1],
    ['interleaved 1F1B, 4 stages on 2 workers', { workers: 2, stages: 4 }, 'interleaved-1f1b', 2],
  ];
  it.each(CASES)('%s, 5 random orders', (_, options, schedule, chunks) => {
    const m = 4;
    for (let seed = 1; seed <= 5; seed++) {
      const { model, plan, actions } = pipeline(options, schedule, m, chunks);
      const wires = new Wires(plan, model, ONE_MICROBATCH);
      if (actions !== null) for (const [w, h] of wires.hosts.entries()) h.setSchedule(actions[w]!);
      const start = wires.start(model, m);
      wires.run({ rng: new Rng(seed) });
      for (const [w, host] of wires.hosts.entries()) {
        expect(host.waiting()).toEqual([]);
        const bound = channelBytes(plan, w, BATCH / m).reduce((a, b) => a + b, 0);
        expect(host.stats.peakQueuedBytes).toBeLessThanOrEqual(bound);
      }
      const ref = referenceStep(model.graph, model.feeds(BATCH), model.params, { microbatches: m });
      expect(wires.result(start).loss).toBe(ref.loss);
      expectBitwiseAll(wires.result(start).grads, ref.grads, 'gradient of ');
    }
  });

  it('a credit for a channel that sends nothing is refused', () => {
    const { model, plan } = pipeline({ workers: 2 }, null, 2);
    const wires = new Wires(plan, model, ONE_MICROBATCH);
    wires.start(model, 2);
    expect(() => wires.hosts[0]!.credit(1, { kind: 'credit', step: 1, mb: 0, stage: 1 })).toThrow(
      /sends it nothing/,
    );
    // Another step's credit is dropped and counted.
    wires.hosts[0]!.credit(1, { kind: 'credit', step: 9, mb: 0, stage: 0 });
    expect(wires.hosts[0]!.stats.dropped).toBe(1);
  });
});

describe('the memory budget of a host', () => {
  it('fails the first task whose output would not fit, naming worker, node and microbatch', () => {
    const model = mlp();
    const plan = compile(model.graph, { workers: 1 });
    const wires = new Wires(plan, model, { memoryBytes: 4096, flow: null });
    wires.start(model, 1);
    wires.run();
    const failed = wires.reports.find((r) => r.kind === 'failed');
    expect(failed).toBeDefined();
    if (failed?.kind !== 'failed') return;
    expect(failed.error.name).toBe('MemoryBudgetError');
    expect(failed.error.message).toMatch(
      /^worker 0: the forward of %\d+ \(\w+\) would make \d+ B while the worker holds/,
    );
    expect(failed.error.context).toMatchObject({ worker: 0, phase: 'forward', microbatch: 0 });
    // The parameters alone (4*16 + 16 + 16*8 + 8 + 8*3 + 3 floats) and their gradients are on the books.
    expect(wires.hosts[0]!.stats.liveBytes).toBeGreaterThanOrEqual(2 * 4 * (64 + 16 + 128 + 8 + 24 + 3));
  });
});
