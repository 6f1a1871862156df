import { describe, expect, it } from 'vitest';
import { Host, type HostEffect } from '../../src/actor/host.ts';
import { splitBatch } from '../../src/autodiff/microbatch.ts';
import { compile } from '../../src/partition/plan.ts';
import { bitwiseEqual, cast } from '../../src/tensor/tensor.ts';
import { mlp } from '../support/models.ts';

describe('Host.applyUpdate', () => {
  it('a second update for the same step is dropped and counted, not applied again or parked', () => {
    const model = mlp();
    const plan = compile(model.graph, { workers: 1 });
    const params = new Map(model.graph.params().map((p) => [p.id, cast(model.params[p.name!]!)]));
    const host = new Host(plan, 0, params);
    host.setOptimizer({ name: 'sgd', lr: 0.1 });
    const feeds = model.feeds(4);
    const effects: HostEffect[] = [];
    effects.push(
      ...host.startStep({
        step: 1,
        microbatches: 1,
        shards: [{ replica: 0, mb: 0, bindings: [['B', 4]], scale: 1 }],
      }),
    );
    for (const input of model.graph.inputs()) {
      effects.push(
        ...host.deliver({
          kind: 'feed',
          step: 1,
          mb: 0,
          replica: 0,
          node: input.id,
          tensor: feeds[input.name!]!,
        }),
      );
    }
    while (host.next() !== null) effects.push(...host.run());
    const norms = effects.filter((e) => e.kind === 'report' && e.report.kind === 'gradNorm');
    expect(norms).toHaveLength(model.graph.params().length);
    const w1 = model.graph.node('w1').id;
    const updated = (fx: HostEffect[]) =>
      fx.filter((e) => e.kind === 'report' && e.report.kind === 'updated');
    expect(updated(host.applyUpdate({ step: 1, lr: 0.1, scale: 1 }))).toHaveLength(1);
    const once = cast(host.getParam(w1));
    expect(bitwiseEqual(once, model.params.w1!)).toBe(false);
    expect(host.applyUpdate({ step: 1, lr: 0.1, scale: 1 })).toEqual([]);
    expect(host.stats.dropped).toBe(1);
    expect(bitwiseEqual(host.getParam(w1), once)).toBe(true);
  });
});

describe('Note [parameters sent with the update]', () => {
  it("a parameter placed once goes to the other replicas' hosts as its update runs, and not again at the next start", () => {
    const model = mlp();
    const plan = compile(model.graph, { workers: 2, replicas: 2, paramPlacement: 'sharded' });
    const params = new Map(model.graph.params().map((p) => [p.id, cast(model.params[p.name!]!)]));
    const hosts = [0, 1].map((w) => {
      const held = new Map([...params].filter(([id]) => plan.paramWorkers.get(id)!.includes(w)));
      const host = new Host(plan, w, held);
      host.setOptimizer({ name: 'sgd', lr: 0.1 });
      return host;
    });
    const reports: HostEffect[] = [];
    /** Delivers every message the effects send, and runs every task, until nothing is left. */
    const settle = (first: [number, HostEffect[]][]) => {
      const queue = [...first];
      for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
        const [, effects] = next;
        for (const e of effects) {
          if (e.kind === 'send') queue.push([e.worker, hosts[e.worker]!.deliver(e.message)]);
          else reports.push(e);
        }
        for (const [w, host] of hosts.entries()) while (host.next() !== null) queue.push([w, host.run()]);
      }
    };
    const step = (s: number) => {
      const shards = splitBatch(model.graph, model.feeds(8, s), { replicas: 2 });
      const start = {
        step: s,
        microbatches: 1,
        shards: shards.map((x) => ({
          replica: x.replica,
          mb: x.mb,
          bindings: [...x.bindings],
          scale: x.scale,
        })),
      };
      const started = hosts.map((h, w) => [w, h.startStep(start)] as [number, HostEffect[]]);
      const paramSends = started.flatMap(([, fx]) =>
        fx.filter((e) => e.kind === 'send' && e.message.kind === 'param'),
      );
      const feeds = shards.flatMap((x) =>
        model.graph.inputs().map((input) => {
          const w = plan.placement[x.replica]![input.id]!;
          const m = {
            kind: 'feed',
            step: s,
            mb: 0,
            replica: x.replica,
            node: input.id,
            tensor: x.feeds[input.name!]!,
          } as const;
          return [w, hosts[w]!.deliver(m)] as [number, HostEffect[]];
        }),
      );
      settle([...started, ...feeds]);
      return paramSends;
    };
    // Step 1 hands every parameter out as it starts.
    expect(step(1).length).toBeGreaterThan(0);
    const updates = hosts.map(
      (h, w) => [w, h.applyUpdate({ step: 1, lr: 0.1, scale: 1 })] as [number, HostEffect[]],
    );
    const sent = updates.flatMap(([, fx]) =>
      fx.filter((e) => e.kind === 'send' && e.message.kind === 'param'),
    );
    expect(sent.length).toBeGreaterThan(0);
    for (const e of sent) expect(e.kind === 'send' && e.message.step).toBe(2);
    settle(updates);
    // Step 2 sends none as it starts, and still runs to the end: every parameter's sum of squares.
    reports.length = 0;
    expect(step(2)).toEqual([]);
    const norms = reports.filter(
      (e) => e.kind === 'report' && e.report.kind === 'gradNorm' && e.report.step === 2,
    );
    expect(norms).toHaveLength(model.graph.params().length);
    expect(hosts.map((h) => h.stats.dropped)).toEqual([0, 0]);
  });
});
