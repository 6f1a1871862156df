// Note [feed storages]: the coordinator writes each step's feed copies into the storages of the last
// step that its links copied rather than transferred.
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { initParams } from '../../src/graph/params.ts';
import { FeedStorages } from '../../src/runtime/feed-storage.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { expectBitwise } from '../support/expect.ts';

describe('feed storages (Note [feed storages])', () => {
  it('hands back the last storage of a place while it is attached and of the same dtype and size', () => {
    const storages = new FeedStorages();
    const a = storages.take(0, 'float32', 8);
    expect(storages.take(0, 'float32', 8)).toBe(a);
    const b = storages.take(1, 'float32', 8);
    expect(b).not.toBe(a);
    expect(storages.take(0, 'float64', 8)).not.toBe(a);
    const c = storages.take(0, 'float64', 8);
    expect(storages.take(0, 'float64', 9)).not.toBe(c);
    // Transferred away (detached): a fresh one.
    const d = storages.take(2, 'float32', 8);
    structuredClone(d.buffer, { transfer: [d.buffer] });
    const e = storages.take(2, 'float32', 8);
    expect(e === d).toBe(false);
    expect(e.length).toBe(8);
  });

  it('a thread runtime fed a different batch every step, its feeds through the ring: bitwise the reference each step', async () => {
    const graph = mlpClassifier({ features: 784, hidden: [64], classes: 10 });
    const params = initParams(graph, 1);
    const rng = new Rng(7);
    const batches = [128, 128, 96, 128].map((n) => ({
      x: rng.uniformTensor([n, 784], 0, 1),
      y: tensor(Array.from({ length: n }, () => rng.int(10))),
    }));
    const runtime = await createRuntime(graph, { workers: 2, replicas: 2, params });
    try {
      for (const [i, feeds] of batches.entries()) {
        const result = await runtime.step(feeds);
        const expected = referenceStep(graph, feeds, params, { replicas: 2, step: i + 1 });
        expect(result.loss).toBe(expected.loss);
        for (const [name, g] of Object.entries(expected.grads)) expectBitwise(result.grads[name]!, g, name);
        // The user's feeds are untouched.
        expect(feeds.x.data.byteLength).toBe(feeds.x.size * 4);
      }
    } finally {
      await runtime.close();
    }
  });
});
