// One node actor alone: when its forward and its VJP may run, what it keeps, how it sums its cotangent.
import { describe, expect, it } from 'vitest';
import { ActorKinds, NodeActor } from '../../src/actor/node-actor.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Node } from '../../src/graph/graph.ts';
import { eager } from '../../src/ops/eager.ts';
import { compile, edgeGradient, type Plan } from '../../src/partition/plan.ts';
import { bitwiseEqual, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

/** The actor of node `name` in replica 0, as a host makes it. */
function actorOf<T>(plan: Plan, name: string, constant: (id: number) => T): NodeActor<T> {
  const node = plan.graph.node(name);
  const needs = node.inputs.map((_, s) => edgeGradient(plan, node.id, s));
  return new NodeActor<T>(plan, node, 0, needs, constant);
}

/**
 * Every kind of input: `mm` reads a per-microbatch value and a parameter, `both` two per-microbatch
 * values, `wt` only a parameter and `gain` only a constant (Note [fixed-input nodes]); `squared`
 * reads `mm` twice.
 */
function feedsPlan(): Plan {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 2]);
  const w = b.param('w', [2, 2]);
  const h = b.name(b.tanh(x), 'h');
  const mm = b.name(b.matmul(h, w), 'mm');
  const both = b.name(b.add(mm, h), 'both');
  const wt = b.name(b.transpose(w), 'wt');
  const gain = b.name(b.exp(b.const(tensor([0.5, -0.25]))), 'gain');
  const squared = b.name(b.mul(mm, mm), 'squared');
  const product = b.name(b.mul(b.matmul(both, wt), squared), 'product');
  b.output('loss', b.mean(b.square(b.mul(product, gain))));
  return compile(b.build(), { workers: 1 });
}

/** `h` feeds three consumers, so its VJP is owed three contributions (cells 0, 1, 2). */
function fanOutPlan(): Plan {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 3]);
  const h = b.name(b.tanh(b.matmul(x, b.param('w', [3, 3]))), 'h');
  b.output('loss', b.mean(b.add(b.add(b.square(h), b.tanh(h)), b.sigmoid(h))));
  return compile(b.build(), { workers: 1 });
}

/** A constant's value in the string actors: what it stands for. */
const constant = (id: number) => `const %${id}`;

/** A string actor of `feedsPlan` started for `m` microbatches: values are the names they stand for. */
function started(name: string, m = 2): NodeActor<string> {
  const actor = actorOf(feedsPlan(), name, constant);
  actor.start(m);
  return actor;
}

/** Slot of the parameter input, and of the first per-microbatch input. */
const slotOf = (a: NodeActor<string>, kind: 'param' | 'microbatch') => a.slots.indexOf(kind);

describe('NodeActor forward', () => {
  it('fires when the last per-microbatch input arrives after its parameter', () => {
    const mm = started('mm');
    expect(mm.receiveParam(slotOf(mm, 'param'), 'w')).toEqual([]);
    expect(mm.receiveInput(1, slotOf(mm, 'microbatch'), 'h1')).toBe(true);
  });

  it('fires when its parameter arrives after the per-microbatch inputs, for each microbatch waiting', () => {
    const mm = started('mm', 3);
    expect(mm.receiveInput(0, slotOf(mm, 'microbatch'), 'h0')).toBe(false);
    expect(mm.receiveInput(2, slotOf(mm, 'microbatch'), 'h2')).toBe(false);
    expect(mm.receiveParam(slotOf(mm, 'param'), 'w')).toEqual([0, 2]);
  });

  it('waits for every per-microbatch input', () => {
    const both = started('both');
    expect(both.receiveInput(0, 1, 'h0')).toBe(false);
    expect(both.receiveInput(0, 0, 'mm0')).toBe(true);
  });

  it('hands the forward its inputs in slot order, the parameter filled in', () => {
    const mm = started('mm');
    mm.receiveInput(0, 0, 'h0');
    mm.receiveParam(1, 'w');
    expect(mm.arguments(0)).toEqual(['h0', 'w']);
  });

  it('a node fed only by a parameter fires for every microbatch once the parameter arrives', () => {
    const wt = started('wt', 3);
    expect(wt.fixedOnly).toBe(true);
    expect(wt.readyAtStart()).toEqual([]);
    expect(wt.receiveParam(0, 'w')).toEqual([0, 1, 2]);
  });

  it('a node fed only by constants is ready for every microbatch when the step starts', () => {
    const gain = started('gain', 3);
    expect(gain.fixedOnly).toBe(true);
    expect(gain.readyAtStart()).toEqual([0, 1, 2]);
    expect(gain.arguments(1)).toEqual([constant(gain.node.inputs[0]!)]);
  });

  it('a parameter that arrives again does not fire a fixed-input node twice', () => {
    const wt = started('wt');
    for (const mb of wt.receiveParam(0, 'w')) wt.afterForward(mb, `wt${mb}`);
    expect(wt.hasParam(0)).toBe(true);
    expect(wt.receiveParam(0, 'w')).toEqual([]);
    expect(wt.readyAtStart()).toEqual([]);
  });

  it('a constant-only node is not ready again for the microbatches that ran', () => {
    const gain = started('gain', 2);
    gain.afterForward(0, 'gain0');
    expect(gain.readyAtStart()).toEqual([1]);
  });

  it('detects a duplicate input: one that arrived, or any once the forward ran', () => {
    const both = started('both');
    expect(both.hasInput(0, 0)).toBe(false);
    both.receiveInput(0, 0, 'mm0');
    expect([both.hasInput(0, 0), both.hasInput(0, 1), both.hasInput(1, 0)]).toEqual([true, false, false]);
    both.receiveInput(0, 1, 'h0');
    both.afterForward(0, 'both0');
    expect(both.hasInput(0, 1)).toBe(true);
  });

  it('detects a duplicate parameter', () => {
    const mm = started('mm');
    expect(mm.hasParam(1)).toBe(false);
    mm.receiveParam(1, 'w');
    expect(mm.hasParam(1)).toBe(true);
  });
});

describe('NodeActor keeps what its op saves for the backward', () => {
  const plan = feedsPlan();
  const id = (name: string) => plan.graph.node(name).id;
  it.each([
    { name: 'mm', saves: 'both inputs', kept: () => [id('h'), id('w')] },
    { name: 'both', saves: 'nothing (add)', kept: () => [] },
    { name: 'product', saves: 'both inputs (mul)', kept: () => plan.graph.node('product').inputs },
    { name: 'squared', saves: 'its one input once (mul mm mm)', kept: () => [id('mm')] },
    { name: 'h', saves: 'nothing: no gradient flows through it', kept: () => [] },
    { name: 'gain', saves: 'nothing: no gradient flows through it', kept: () => [] },
  ])('$name keeps $saves', ({ name, kept }) => {
    expect(actorOf(plan, name, () => 0).keptIds).toEqual(kept());
  });

  it('an op that saves its output keeps the forward output', () => {
    const h = actorOf(fanOutPlan(), 'h', constant);
    h.start(1);
    h.receiveInput(0, 0, 'xw');
    h.afterForward(0, 'tanh(xw)');
    expect(h.keptIds).toEqual([h.node.id]);
    expect(h.state(0).kept).toEqual(['tanh(xw)']);
  });

  it('after the forward, the kept inputs stay and the rest go', () => {
    const mm = started('mm');
    mm.receiveInput(0, 0, 'h0');
    mm.receiveParam(1, 'w');
    mm.arguments(0);
    mm.afterForward(0, 'mm0');
    expect(mm.state(0).kept).toEqual(['h0', 'w']);
    expect(mm.state(0).inputs).toEqual([undefined, undefined]);
  });
});

describe('NodeActor backward', () => {
  it('is owed one contribution per gradient-carrying consumer edge', () => {
    expect(actorOf(fanOutPlan(), 'h', () => 0).expected).toBe(3);
  });

  it('becomes ready exactly when the last owed contribution arrives after the forward', () => {
    const h = actorOf(fanOutPlan(), 'h', constant);
    h.start(1);
    h.receiveInput(0, 0, 'xw');
    h.afterForward(0, 'h0');
    expect(h.receiveGradient(0, 2, 'g2')).toBe(false);
    expect(h.receiveGradient(0, 0, 'g0')).toBe(false);
    expect(h.receiveGradient(0, 1, 'g1')).toBe(true);
  });

  it('detects a duplicate contribution: its cell is filled, or every owed one is in', () => {
    const h = actorOf(fanOutPlan(), 'h', constant);
    h.start(2);
    h.afterForward(0, 'h0');
    h.receiveGradient(0, 1, 'g1');
    expect([h.hasGradient(0, 0), h.hasGradient(0, 1), h.hasGradient(1, 1)]).toEqual([false, true, false]);
    h.receiveGradient(0, 0, 'g0');
    h.receiveGradient(0, 2, 'g2');
    h.holdCotangent(0, 'g');
    // The cells were let go between the parts of a split backward; the count still says complete.
    expect(h.hasGradient(0, 0)).toBe(true);
  });

  it('sums the contributions in cell order, whatever order they arrived in (bit for bit)', () => {
    // In float32, 1e8 + 1 rounds back to 1e8: only the cell order gives these bits.
    const cells = [tensor([[1, 3, 0.1]]), tensor([[1e8, -3e7, 0.2]]), tensor([[-1e8, 3e7, 0.3]])];
    const canonical = eager.add(eager.add(cells[0]!, cells[1]!), cells[2]!);
    expect(bitwiseEqual(eager.add(eager.add(cells[1]!, cells[2]!), cells[0]!), canonical)).toBe(false);
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    const h = actorOf<Tensor>(fanOutPlan(), 'h', () => tensor([0]));
    h.start(orders.length);
    for (const [mb, order] of orders.entries()) {
      h.afterForward(mb, tensor([[0, 0, 0]]));
      for (const k of order) h.receiveGradient(mb, k, cells[k]!);
      const g = h.cotangent(eager, mb);
      expectBitwise(g, canonical, `arrival order ${order}`);
    }
  });

  it('the loss has its seed for cotangent and is owed nothing', () => {
    const loss = actorOf<Tensor>(fanOutPlan(), 'loss', () => tensor([0]));
    loss.start(1);
    const seed = tensor(0.5);
    loss.seed(0, seed);
    expect(loss.expected).toBe(0);
    expect(loss.cotangent(eager, 0)).toBe(seed);
  });
});

describe('NodeActor between steps', () => {
  it('reset forgets the parameters and every microbatch of the step', () => {
    const mm = started('mm');
    mm.receiveParam(1, 'w');
    mm.receiveInput(0, 0, 'h0');
    mm.afterForward(0, 'mm0');
    mm.receiveInput(1, 0, 'h1');
    mm.reset();
    mm.start(2);
    expect([mm.hasParam(1), mm.paramsReady(), mm.hasRun(0), mm.hasInput(1, 0)]).toEqual([
      false,
      false,
      false,
      false,
    ]);
    let held = 0;
    mm.held((v) => {
      if (v !== undefined && v !== null) held++;
    });
    expect(held).toBe(0);
    // The next step waits for its parameter again.
    expect(mm.receiveInput(0, 0, 'h0')).toBe(false);
    expect(mm.receiveParam(1, 'w')).toEqual([0]);
  });

  it('after reset, a fixed-input node fires again in the next step', () => {
    const wt = started('wt');
    for (const mb of wt.receiveParam(0, 'w')) wt.afterForward(mb, `wt${mb}`);
    wt.reset();
    wt.start(2);
    expect(wt.receiveParam(0, 'w')).toEqual([0, 1]);
  });

  it('shares a kind between nodes of one op, input kinds, repeats and gradients (Note [actor kinds])', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3]);
    const w = b.param('w', [3]);
    const c = b.const(tensor([1, 2, 3]));
    const names: Record<string, number> = {};
    const made: Node[] = [];
    const at = (name: string, node: Node) => {
      names[name] = node.id;
      made.push(node);
    };
    const v = b.param('v', [3]);
    const a = b.tanh(b.mul(x, v));
    const d = b.exp(b.mul(x, v));
    at('mulA', b.mul(a, w));
    at('mulD', b.mul(d, w)); // same kind as mulA
    at('mulC', b.mul(a, c)); // a constant where mulA has a parameter
    at('mulE', b.mul(b.tanh(x), w)); // no gradient into its first input
    at('square', b.mul(a, a)); // one value read twice
    at('mulAD', b.mul(a, d)); // two values
    at('sub', b.sub(a, w)); // another op
    const wide = Array.from({ length: 9 }, (_, i) => (i % 2 === 0 ? a : d));
    at('wideA', b.apply('concat', wide, { axis: 1 })); // 9 inputs: the key by string
    at('wideB', b.apply('concat', wide, { axis: 1 }));
    at(
      'wideC',
      b.apply(
        'concat',
        wide.map(() => a),
        { axis: 1 },
      ),
    );
    const sum = made.reduce((acc, node) => b.add(acc, b.sum(node)), b.sum(a));
    b.output('loss', sum);
    const plan = compile(b.build(), { workers: 1 });
    const kinds = new ActorKinds();
    const kindOf = (name: string) => {
      const id = names[name]!;
      const needs = plan.graph.nodeAt(id).inputs.map((_, s) => edgeGradient(plan, id, s));
      return kinds.of(plan.graph, id, needs, plan.grad.expected[id]! > 0);
    };
    expect(kindOf('mulD')).toBe(kindOf('mulA'));
    expect(kindOf('wideB')).toBe(kindOf('wideA'));
    const distinct = ['mulA', 'mulC', 'mulE', 'square', 'mulAD', 'sub', 'wideA', 'wideC'].map(kindOf);
    expect(new Set(distinct).size).toBe(distinct.length);
    expect(kindOf('mulC').slots).toEqual(['microbatch', 'const']);
    expect(kindOf('square').needs).toEqual([true, true]);
    expect(kindOf('square').keptFrom).toEqual([0]);
    // A kind made for one node answers for another only when everything it holds agrees.
    for (const name of Object.keys(names)) {
      const node = plan.graph.node(names[name]!);
      const fresh = new ActorKinds();
      const needs = node.inputs.map((_, s) => edgeGradient(plan, node.id, s));
      expect(kindOf(name)).toEqual(fresh.of(plan.graph, node.id, needs, plan.grad.expected[node.id]! > 0));
    }
  });
});
