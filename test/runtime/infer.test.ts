// Inference on the runtime (Note [inference steps] in src/runtime/infer.ts): the forward only, in
// evaluation mode, on the hosts; its outputs bitwise equal to the reference engine's `evaluate`.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { InputError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';
import { deepMlp, dropoutMlp } from '../support/models.ts';

const model = dropoutMlp();
const feeds = model.feeds(11);
// Evaluation mode: dropout is the identity; the loss needs labels, which inference does not feed.
const expected = evaluate(model.graph, feeds, model.params, ['logits']);

describe('runtime.infer: bitwise equal to evaluate', () => {
  const cases: [string, Partial<RuntimeOptions>][] = [
    ['in-process, per-node, 3 workers', { mode: 'in-process', workers: 3, placement: 'per-node' }],
    [
      'in-process, 2 replicas x 3 microbatches',
      { mode: 'in-process', workers: 4, replicas: 2, microbatches: 3 },
    ],
    ['loopback, min-comm, 2 replicas', { mode: 'loopback', workers: 2, replicas: 2, placement: 'min-comm' }],
    ['threads, stages, 2 replicas x 2 microbatches', { workers: 4, replicas: 2, microbatches: 2 }],
  ];
  it.each(cases)('%s', async (_, options) => {
    const rt = await createRuntime(model.graph, { workers: 1, ...options, params: model.params });
    try {
      const out = await rt.infer({ x: feeds['x']! });
      expect(Object.keys(out)).toEqual(['logits']);
      expectBitwise(out['logits']!, expected['logits']!, 'logits');
    } finally {
      await rt.close();
    }
  });

  it('between training steps: the parameters the last update left, and no change to the steps', async () => {
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      microbatches: 2,
      params: model.params,
      optimizer: { name: 'sgd', lr: 0.1 },
    });
    try {
      const options = { replicas: 2, microbatches: 2 };
      const first = await rt.step(feeds);
      expect(first.loss).toBe(referenceStep(model.graph, feeds, model.params, { ...options, step: 1 }).loss);
      const params = await rt.getParams();
      const out = await rt.infer(feeds);
      expectBitwiseAll(out, evaluate(model.graph, feeds, params, ['logits']));
      // An inference is no training step: the next one draws step 2's masks.
      const second = await rt.step(feeds);
      expect(second.loss).toBe(referenceStep(model.graph, feeds, params, { ...options, step: 2 }).loss);
    } finally {
      await rt.close();
    }
  });

  it('with one shard any node the plan computes: the loss too (its labels fed); nothing kept', async () => {
    const rt = await createRuntime(model.graph, { mode: 'in-process', workers: 3, params: model.params });
    try {
      await rt.step(feeds);
      expect(Math.max(...(await rt.stats()).map((s) => s.peakKeptBytes))).toBeGreaterThan(0);
      const out = await rt.infer(feeds, { outputs: ['loss', 'logits'] });
      expectBitwiseAll(out, evaluate(model.graph, feeds, model.params, ['loss', 'logits']));
      // Nothing kept for a backward that never runs.
      expect((await rt.stats()).map((s) => s.peakKeptBytes)).toEqual([0, 0, 0]);
    } finally {
      await rt.close();
    }
  });

  it("with `trace`, an inference's spans stay out of the next step's trace", async () => {
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      params: model.params,
      trace: true,
    });
    try {
      const spans = async () => (await rt.step(feeds)).trace!.spans.length;
      const alone = await spans();
      await rt.infer(feeds);
      expect(await spans()).toBe(alone);
    } finally {
      await rt.close();
    }
  });

  it('under a pipeline schedule, in dataflow order (1F1B would wait for backwards that never run)', async () => {
    const deep = deepMlp(4);
    const params = initParams(deep.graph, 2);
    const rt = await createRuntime(deep.graph, {
      mode: 'in-process',
      workers: 4,
      schedule: '1f1b',
      microbatches: 4,
      params,
    });
    try {
      const batch = deep.feeds(8);
      const hidden = deep.graph.nodes.filter((n) => n.op === 'tanh').at(-1)!.id;
      const out = await rt.infer(batch, { outputs: [hidden] });
      expectBitwise(out[`%${hidden}`]!, evaluate(deep.graph, batch, params, [hidden])[`%${hidden}`]!);
      // Training still follows the schedule.
      const step = await rt.step(batch);
      expect(step.loss).toBe(referenceStep(deep.graph, batch, params, { microbatches: 4 }).loss);
    } finally {
      await rt.close();
    }
  });

  it('refuses what it cannot compute or join, before any host starts it (InputError)', async () => {
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      microbatches: 2,
      params: model.params,
    });
    try {
      await expect(rt.infer(feeds, { outputs: ['w1'] })).rejects.toThrow(/'w1' is a parameter/);
      await expect(rt.infer(feeds, { outputs: ['loss'] })).rejects.toThrow(
        /with 2 shards an output needs the batch dimension/,
      );
      await expect(rt.infer(feeds, { outputs: [] })).rejects.toThrow(InputError);
      await expect(rt.infer({}, { outputs: ['logits'] })).rejects.toThrow(/feed 'x': missing/);
      // The runtime is fine afterwards.
      expectBitwise((await rt.infer(feeds))['logits']!, expected['logits']!);
    } finally {
      await rt.close();
    }
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 2]);
    b.output('other', b.tanh(x));
    b.output('loss', b.mean(b.square(b.matmul(x, b.param('w', [2, 2])))));
    const graph = b.build();
    const side = await createRuntime(graph, { mode: 'in-process', workers: 1, params: initParams(graph, 1) });
    try {
      await expect(side.infer({ x: new Rng(1).normalTensor([3, 2]) })).rejects.toThrow(
        /'other' is not computed by the plan/,
      );
    } finally {
      await side.close();
    }
  });
});
