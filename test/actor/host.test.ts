// Hosts driven by hand, no threads: one host's 'send' effects are delivered to the other, and the
// reports are checked against the reference step (src/autodiff/microbatch.ts) bit for bit.
import { describe, expect, it } from 'vitest';
import { Host, type Message } from '../../src/actor/host.ts';
import type { HostLimits } from '../../src/actor/host-types.ts';
import type { Report, StepStart } from '../../src/actor/messages.ts';
import { referenceStep, splitBatch } from '../../src/autodiff/microbatch.ts';
import { columnsOf } from '../../src/graph/columns.ts';
import { Graph, label, type NodeSource } from '../../src/graph/graph.ts';
import { sumOfSquares } from '../../src/optim/spec.ts';
import { type CompileOptions, compile, type Plan } from '../../src/partition/plan.ts';
import { planColumns, planFromColumns } from '../../src/partition/plan-columns.ts';
import { hostActions } from '../../src/runtime/pipeline.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { deepMlp, fixedInputs, type Model, mlp } from '../support/models.ts';

const BATCH = 8;

interface Envelope {
  readonly to: number;
  readonly message: Message;
}

/** The hosts of a plan and the messages between them: a cluster whose every move the test makes. */
class Hand {
  readonly hosts: Host[];
  /** Sent, not delivered yet. */
  readonly pending: Envelope[] = [];
  /** Delivered, and never delivered (see `run`). */
  readonly delivered: Envelope[] = [];
  readonly withheld: Envelope[] = [];
  readonly reports: Report[] = [];

  /** `hostPlan`: each host's own plan of the same graph (default: `plan` itself); `limits`: the hosts'. */
  constructor(
    readonly plan: Plan,
    params: Record<string, Tensor>,
    hostPlan: (worker: number) => Plan = () => plan,
    limits?: HostLimits,
  ) {
    const graph = plan.graph;
    // Copies: the model's tensors stay the test's.
    const values = new Map(graph.params().map((n) => [n.id, cast(params[n.name!]!)]));
    this.hosts = Array.from(
      { length: plan.workers },
      (_, w) => new Host(hostPlan(w), w, values, limits === undefined ? {} : { limits }),
    );
  }

  perform(effects: ReturnType<Host['run']>): void {
    for (const e of effects) {
      if (e.kind === 'send') this.pending.push({ to: e.worker, message: e.message });
      else if (e.kind === 'report') this.reports.push(e.report);
    }
  }

  /** A step's start and its feeds, as the coordinator makes them. */
  stepStart(
    step: number,
    feeds: Record<string, Tensor>,
    microbatches: number,
  ): { start: StepStart; feeds: Envelope[] } {
    const { graph, replicas, placement } = this.plan;
    const shards = splitBatch(graph, feeds, { replicas, microbatches });
    const start: StepStart = {
      step,
      microbatches,
      shards: shards.map((s) => ({
        replica: s.replica,
        mb: s.mb,
        bindings: [...s.bindings],
        scale: s.scale,
      })),
    };
    const messages = shards.flatMap((s) =>
      graph.inputs().map((input) => ({
        to: placement[s.replica]![input.id]!,
        message: {
          kind: 'feed',
          step,
          mb: s.mb,
          replica: s.replica,
          node: input.id,
          tensor: s.feeds[input.name!]!,
        } as const,
      })),
    );
    return { start, feeds: messages };
  }

  /** Starts step `step` on every host and sends its feeds. */
  start(step: number, feeds: Record<string, Tensor>, microbatches: number): StepStart {
    const made = this.stepStart(step, feeds, microbatches);
    for (const host of this.hosts) this.perform(host.startStep(made.start));
    this.pending.push(...made.feeds);
    return made.start;
  }

  /**
   * Delivers messages and runs tasks until nothing is left to do. A message `withhold` picks is kept
   * back. With `rng`, each move is a random pending message or a random host's next task.
   */
  run(options: { withhold?: (e: Envelope) => boolean; rng?: Rng } = {}): void {
    const { withhold, rng } = options;
    for (;;) {
      const busy = this.hosts.filter((h) => h.next() !== null);
      if (this.pending.length === 0 && busy.length === 0) return;
      const pick = rng?.int(this.pending.length + busy.length) ?? 0;
      if (pick < this.pending.length) {
        const [e] = this.pending.splice(pick, 1);
        if (withhold?.(e!)) this.withheld.push(e!);
        else {
          this.delivered.push(e!);
          this.perform(this.hosts[e!.to]!.deliver(e!.message));
        }
      } else this.perform(busy[pick - this.pending.length]!.run());
    }
  }

  /** The step's loss and gradients from the reports, as the coordinator computes them. */
  result(start: StepStart): { loss: number; grads: Record<string, Tensor> } {
    const losses = new Map<number, number>();
    const grads: Record<string, Tensor> = {};
    const sums = new Map<string, number>();
    for (const r of this.reports) {
      if (r.step !== start.step) continue;
      if (r.kind === 'loss') losses.set(r.replica * start.microbatches + r.mb, r.value);
      else if (r.kind === 'grad') grads[this.plan.graph.nodes[r.node]!.name!] = r.tensor;
      else if (r.kind === 'gradNorm') sums.set(this.plan.graph.nodes[r.node]!.name!, r.sumsq);
      else expect.fail(`unexpected report ${JSON.stringify(r)}`);
    }
    // Note [global norm order]: each gradient's sum of squares comes from its host, computed as the
    // coordinator would compute it.
    expect([...sums.keys()].sort()).toEqual(Object.keys(grads).sort());
    for (const [name, g] of Object.entries(grads)) expect(sums.get(name)).toBe(sumOfSquares(g));
    // Note [gradient sum order]: replicas, then microbatches.
    let loss = 0;
    for (let r = 0; r < this.plan.replicas; r++) {
      let lossR = 0;
      for (let mb = 0; mb < start.microbatches; mb++) {
        const k = r * start.microbatches + mb;
        lossR += losses.get(k)! * start.shards[k]!.scale;
      }
      loss += lossR;
    }
    return { loss, grads };
  }
}

/** Loss and every gradient bitwise equal to the reference step's. */
function expectReference(
  got: { loss: number; grads: Record<string, Tensor> },
  model: Model,
  options: { replicas: number; microbatches: number; seed?: number },
): void {
  const ref = referenceStep(model.graph, model.feeds(BATCH, options.seed), model.params, options);
  expect(got.loss).toBe(ref.loss);
  expect(Object.keys(got.grads).sort()).toEqual(Object.keys(ref.grads).sort());
  expectBitwiseAll(got.grads, ref.grads, 'gradient of ');
}

interface Case {
  name: string;
  model: () => Model;
  compile: CompileOptions;
  microbatches: number;
  schedule?: '1f1b' | 'zb-h1';
}

const PER_NODE: Case = {
  name: 'MLP, 2 workers per node',
  model: mlp,
  compile: { workers: 2, placement: 'per-node' },
  microbatches: 2,
};
/** `w` reaches `square(w)` on the other worker, and `v` reaches `sub(v, c)` on the other worker. */
const FIXED_INPUTS: Case = {
  name: 'fixed-input nodes, 2 workers per node',
  model: fixedInputs,
  compile: { workers: 2, placement: 'per-node' },
  microbatches: 3,
};
const CASES: Case[] = [
  PER_NODE,
  {
    name: 'MLP, 2 replicas of 2 workers, sharded parameters',
    model: mlp,
    compile: { workers: 4, replicas: 2, placement: 'per-node' },
    microbatches: 2,
  },
  FIXED_INPUTS,
  {
    name: 'deep MLP, 2 stages, 1F1B',
    model: () => deepMlp(4),
    compile: { workers: 2 },
    microbatches: 4,
    schedule: '1f1b',
  },
  {
    name: 'deep MLP, 2 stages, ZB-H1 (split backward)',
    model: () => deepMlp(4),
    compile: { workers: 2 },
    microbatches: 4,
    schedule: 'zb-h1',
  },
];

function handOf(c: Case): { hand: Hand; model: Model } {
  const model = c.model();
  const plan = compile(model.graph, c.compile);
  const hand = new Hand(plan, model.params);
  if (c.schedule !== undefined) {
    const actions = hostActions(
      plan,
      generateSchedule(c.schedule, { workers: plan.group, microbatches: c.microbatches }),
    );
    for (const [w, host] of hand.hosts.entries()) host.setSchedule(actions[w]!);
  }
  return { hand, model };
}

describe('Host: a step driven by hand equals the reference step bit for bit', () => {
  it.each(CASES)('$name', (c) => {
    const { hand, model } = handOf(c);
    const start = hand.start(1, model.feeds(BATCH), c.microbatches);
    hand.run();
    const replicas = c.compile.replicas ?? 1;
    expectReference(hand.result(start), model, { replicas, microbatches: c.microbatches });
    // Every actor is done: nothing waits for anything.
    for (const host of hand.hosts) expect(host.waiting()).toEqual([]);
  });

  it.each(CASES.filter((c) => c.schedule === undefined))(
    '$name, messages and tasks in 5 random orders',
    (c) => {
      for (let seed = 1; seed <= 5; seed++) {
        const { hand, model } = handOf(c);
        const start = hand.start(1, model.feeds(BATCH), c.microbatches);
        hand.run({ rng: new Rng(seed) });
        const replicas = c.compile.replicas ?? 1;
        expectReference(hand.result(start), model, { replicas, microbatches: c.microbatches });
      }
    },
  );

  it('every message delivered twice: the copies are dropped and counted, the step is unchanged', () => {
    const c = FIXED_INPUTS;
    const { hand, model } = handOf(c);
    let sent = 0;
    const perform = hand.perform.bind(hand);
    hand.perform = (effects) => {
      const copies = effects.filter((e) => e.kind === 'send');
      sent += copies.length;
      perform([...effects, ...copies]);
    };
    // Parameters, activations and gradients: in this plan each reaches one consumer on its host.
    const start = hand.start(1, model.feeds(BATCH), c.microbatches);
    hand.run();
    expect(hand.delivered.some((e) => e.message.kind === 'param')).toBe(true);
    expect(sent).toBeGreaterThan(0);
    expect(hand.hosts.reduce((n, h) => n + h.stats.dropped, 0)).toBe(sent);
    expectReference(hand.result(start), model, { replicas: 1, microbatches: c.microbatches });
  });
  it('every message delivered again after the step ran: one drop per message, nothing left waiting', () => {
    for (const c of [FIXED_INPUTS, PER_NODE]) {
      const { hand, model } = handOf(c);
      const start = hand.start(1, model.feeds(BATCH), c.microbatches);
      hand.run();
      const result = hand.result(start);
      const late = hand.delivered.slice();
      expect(new Set(late.map((e) => e.message.kind))).toEqual(
        new Set(['feed', 'activation', 'gradient', 'param']),
      );
      for (const { to, message } of late) hand.perform(hand.hosts[to]!.deliver(message));
      expect(hand.hosts.every((h) => h.next() === null)).toBe(true);
      expect(hand.hosts.reduce((n, h) => n + h.stats.dropped, 0)).toBe(late.length);
      expect(hand.hosts.flatMap((h) => h.waiting())).toEqual([]);
      expectReference(result, model, { replicas: 1, microbatches: c.microbatches });
    }
  });
});

describe('Host: messages of other steps', () => {
  /** Step 1 run to the end. */
  function afterStepOne() {
    const { hand, model } = handOf(PER_NODE);
    hand.start(1, model.feeds(BATCH, 1), 2);
    hand.run();
    return { hand, model };
  }

  it('a message for a newer step is held until that step starts', () => {
    const { hand, model } = afterStepOne();
    const { start, feeds } = hand.stepStart(2, model.feeds(BATCH, 2), 2);
    for (const { to, message } of feeds) expect(hand.hosts[to]!.deliver(message)).toEqual([]);
    for (const host of hand.hosts) {
      expect(host.next()).toBeNull();
      expect(host.stats.dropped).toBe(0);
    }
    for (const host of hand.hosts) hand.perform(host.startStep(start));
    expect(hand.hosts.some((h) => h.next()?.phase === 'forward')).toBe(true);
    hand.run();
    expectReference(hand.result(start), model, { replicas: 1, microbatches: 2, seed: 2 });
  });

  it('a message for an older step is dropped and counted', () => {
    const { hand, model } = afterStepOne();
    const old = hand.delivered.find((e) => e.message.kind === 'activation')!;
    const start = hand.start(2, model.feeds(BATCH, 2), 2);
    const host = hand.hosts[old.to]!;
    expect(host.deliver(old.message)).toEqual([]);
    expect(host.stats.dropped).toBe(1);
    hand.run();
    expectReference(hand.result(start), model, { replicas: 1, microbatches: 2, seed: 2 });
  });
});

describe('Host: waiting() names what a withheld message leaves missing', () => {
  it('an activation: its consumer waits for inputs from the producer', () => {
    const { hand, model } = handOf(PER_NODE);
    const { graph, consumers } = hand.plan;
    const x = graph.node('x');
    const [[consumer]] = consumers[x.id] as [[number, number]];
    hand.start(1, model.feeds(BATCH), 2);
    hand.run({
      withhold: (e) => e.message.kind === 'activation' && e.message.node === x.id && e.message.mb === 0,
    });
    expect(hand.withheld).toHaveLength(1);
    const waiting = hand.hosts.flatMap((h) => h.waiting());
    expect(waiting).toContainEqual({
      node: label(graph.nodes[consumer]!),
      replica: 0,
      mb: 0,
      waitingFor: 'inputs',
      have: 0,
      need: 1,
      from: ['x'],
    });
    // Microbatch 1 went through: all that waits is microbatch 0's.
    expect(waiting.filter((w) => w.mb !== 0)).toEqual([]);
  });

  it('a parameter: a node fed only by it waits for parameters, every microbatch', () => {
    const { hand, model } = handOf(FIXED_INPUTS);
    const { graph, placement } = hand.plan;
    const w = graph.node('w');
    // square(w), for the weight decay: on another worker than w in this placement.
    const square = graph.nodes.find((n) => n.op === 'square' && n.inputs[0] === w.id)!;
    const at = placement[0]![square.id]!;
    expect(at).not.toBe(placement[0]![w.id]);
    hand.start(1, model.feeds(BATCH), 3);
    hand.run({ withhold: (e) => e.message.kind === 'param' && e.message.node === w.id && e.to === at });
    expect(hand.withheld).toHaveLength(1);
    const entries = hand.hosts[at]!.waiting().filter((e) => e.node === label(square));
    expect(entries).toEqual(
      [0, 1, 2].map((mb) => ({
        node: label(square),
        replica: 0,
        mb,
        waitingFor: 'parameters',
        have: 0,
        need: 1,
        from: ['w'],
      })),
    );
  });

  it('a gradient: its producer waits for gradients from the consumer, or for parameter gradients', () => {
    const { hand, model } = handOf(PER_NODE);
    const { graph } = hand.plan;
    const isParam = (id: number) => graph.nodes[id]!.op === 'param';
    let toNode: Envelope | undefined;
    let toParam: Envelope | undefined;
    hand.start(1, model.feeds(BATCH), 2);
    hand.run({
      // Microbatch 1's first contribution to a node, and microbatch 0's first to a parameter.
      withhold: (e) => {
        const m = e.message;
        if (m.kind !== 'gradient') return false;
        if (toNode === undefined && m.mb === 1 && !isParam(m.node)) toNode = e;
        else if (toParam === undefined && m.mb === 0 && isParam(m.node)) toParam = e;
        else return false;
        return true;
      },
    });
    expect(hand.withheld).toHaveLength(2);
    const [a, b] = [toNode!.message, toParam!.message] as Extract<Message, { kind: 'gradient' }>[];
    expect(hand.hosts[toNode!.to]!.waiting()).toContainEqual({
      node: label(graph.nodes[a!.node]!),
      replica: 0,
      mb: 1,
      waitingFor: 'gradients',
      have: 0,
      need: 1,
      from: [label(graph.nodes[a!.consumer]!)],
    });
    expect(hand.hosts[toParam!.to]!.waiting()).toContainEqual({
      node: label(graph.nodes[b!.node]!),
      replica: 0,
      mb: 0,
      waitingFor: 'parameter gradients',
      have: 0,
      need: 1,
      from: [],
    });
  });
});

describe('Host on a graph that makes its nodes on first read (Note [nodes on first read])', () => {
  it.each([PER_NODE, FIXED_INPUTS])(
    '$name: the reference step, and each host makes only the nodes it runs',
    (c) => {
      const model = c.model();
      const g = model.graph;
      const plan = compile(g, c.compile);
      const made: number[][] = [];
      // Each host's plan over a graph of its own, as a worker thread rebuilds it (Note [shipped plan]).
      const hostPlan = (): Plan => {
        const ids: number[] = [];
        made.push(ids);
        const source: NodeSource = {
          size: g.size,
          node: (id) => {
            ids.push(id);
            return { ...g.nodes[id]! };
          },
          op: (id) => g.nodes[id]!.op,
          dtype: (id) => g.nodes[id]!.dtype,
          attrs: (id) => g.nodes[id]!.attrs,
          name: (id) => g.nodes[id]!.name,
          stage: (id) => g.nodes[id]!.stage,
          names: () => new Map(g.names()),
        };
        return planFromColumns(Graph.fromSource(source, g.outputs, columnsOf(g.nodes)), planColumns(plan));
      };
      // Finite limits, as a runtime sets them: the budget and the credits size every value sent or received.
      const hand = new Hand(plan, model.params, hostPlan, {
        memoryBytes: 1 << 30,
        flow: { windowBytes: 1 << 20, minWindow: 1 },
      });
      for (const step of [1, 2]) {
        const start = hand.start(step, model.feeds(BATCH, step), c.microbatches);
        hand.run();
        expectReference(hand.result(start), model, { replicas: 1, microbatches: c.microbatches, seed: step });
        hand.reports.length = 0;
        for (const host of hand.hosts) host.reset();
      }
      for (const [w, ids] of made.entries()) {
        expect(new Set(ids).size).toBe(ids.length);
        // Its actors' nodes, and the constants they read: no other worker's node.
        const foreign = ids.filter((id) => plan.placement[0]![id] !== w && g.nodes[id]!.op !== 'const');
        expect(foreign).toEqual([]);
        expect(ids.length).toBeGreaterThan(0);
      }
    },
  );
});
