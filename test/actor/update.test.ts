import { describe, expect, it } from 'vitest';
import { Host, type HostEffect } from '../../src/actor/host.ts';
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
