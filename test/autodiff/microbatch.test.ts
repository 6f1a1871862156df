// Note [microbatch scaling]: cutting a batch into replicas x microbatches shards, each loss seeded
// with its share of the batch, gives the whole batch's mean loss and gradient (up to rounding),
// also when the shards are not all the same size.
import { describe, expect, it } from 'vitest';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import { referenceStep, shardSizes } from '../../src/autodiff/microbatch.ts';
import { mlp } from '../support/models.ts';

describe('microbatch scaling', () => {
  it.each([
    [10, 2, 3],
    [24, 2, 2],
    [7, 1, 4],
  ])(
    'batch %i as %i replicas x %i microbatches: the whole batch mean loss and gradients',
    (batch, replicas, microbatches) => {
      const model = mlp();
      const graph = model.graph;
      const feeds = model.feeds(batch, 3);
      const whole = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} })(feeds, model.params);
      const split = referenceStep(graph, feeds, model.params, { replicas, microbatches });
      expect(split.loss).toBeCloseTo(whole.value.item(), 5);
      for (const [name, g] of Object.entries(split.grads)) {
        const want = whole.grads[name]!;
        for (let i = 0; i < g.size; i++) expect(g.data[i]).toBeCloseTo(want.data[i]!, 5);
      }
      // Uneven shards where the batch does not divide (10 over 6: 2, 2, 2, 2, 1, 1).
      const sizes = shardSizes(batch, replicas * microbatches);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(batch);
      if (batch % (replicas * microbatches) !== 0) expect(new Set(sizes).size).toBe(2);
    },
  );
});
