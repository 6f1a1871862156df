import { describe, expect, it } from 'vitest';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { expectBitwise } from '../support/expect.ts';

// Note [owned contributions] (src/actor/router.ts): a parameter's gradient that is its own storage is
// reported without a copy; one that is the storage of the cotangent its VJP read is copied, as its
// transfer would take that cotangent from the VJPs still to run.
describe('owned contributions', () => {
  it('a pass-through gradient and an owned one: bitwise the reference over steps, the pass-through one copied', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', [64, 32]);
    const w = b.param('w', [32, 64], { init: { kind: 'normal', std: 0.2 } });
    // add's VJP hands its cotangent both to the matmul and to `shift` (same shape: no reduction); h
    // has two consumers, so that cotangent is a fresh sum, marked by nothing else.
    const shift = b.param('shift', [64, 64], { init: { kind: 'normal', std: 0.1 } });
    const h = b.add(b.matmul(x, w), shift);
    b.output('loss', b.mean(b.add(b.mul(h, h), h)));
    const graph = b.build();
    const params = initParams(graph, 3);
    const feeds = { x: new Rng(5).normalTensor([64, 32]) };
    const reference = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
    const runtime = await createRuntime(graph, { workers: 1, params });
    try {
      for (let step = 0; step < 3; step++) {
        const before = (await runtime.stats())[0]!.copies;
        const result = await runtime.step(feeds);
        const copies = (await runtime.stats())[0]!.copies - before;
        for (const name of ['w', 'shift']) expectBitwise(result.grads[name]!, reference.grads[name]!, name);
        // The pass-through gradient of `shift` was copied (its transfer would take the matmul's cotangent).
        expect(copies).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await runtime.close();
    }
  });

  // Note [storage marks] (src/tensor/pool.ts): h1's cotangent (128 x 256, marked shared) and W2's
  // gradient (256 x 128) share a pool class; recycled into the gradient, the old mark made it copied.
  it('a recycled storage loses its shared mark: no gradient of the MLP copied after the first step', async () => {
    const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
    const params = initParams(graph, 1);
    const rng = new Rng(4);
    const feeds = {
      x: rng.uniformTensor([128, 784], 0, 1),
      y: tensor(Array.from({ length: 128 }, () => rng.int(10))),
    };
    const reference = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} })(feeds, params);
    const runtime = await createRuntime(graph, { workers: 1, params });
    try {
      await runtime.step(feeds);
      for (let step = 0; step < 3; step++) {
        const before = (await runtime.stats())[0]!.copies;
        const result = await runtime.step(feeds);
        expect((await runtime.stats())[0]!.copies - before).toBe(0);
        for (const [name, g] of Object.entries(reference.grads)) expectBitwise(result.grads[name]!, g, name);
      }
    } finally {
      await runtime.close();
    }
  });
});
