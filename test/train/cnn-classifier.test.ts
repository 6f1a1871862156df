// cnnClassifier: LeNet-5's layers and parameter count, the flat pixels read as the NHWC image the
// doc promises (against the same layers built by hand on an image input), its refused options, and
// training with dropout on worker threads through Trainer.fit, bit for bit against a reference loop
// over the same batches; evaluation and predict take the model unchanged.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { Dataset } from '../../src/data/dataset.ts';
import { InputError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { conv2d, dense } from '../../src/graph/nn.ts';
import { initParams } from '../../src/graph/params.ts';
import { summary } from '../../src/graph/summary.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { cosineLr } from '../../src/optim/schedule.ts';
import { makeOptimizer } from '../../src/optim/spec.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, tensor } from '../../src/tensor/tensor.ts';
import { evaluateClassifier } from '../../src/train/evaluate.ts';
import { cnnClassifier } from '../../src/train/models.ts';
import { predict } from '../../src/train/predict.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { thrown } from '../support/errors.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';

const shapes = (graph: ReturnType<typeof cnnClassifier>) =>
  Object.fromEntries(graph.params().map((p) => [p.name!, p.shape]));

describe('cnnClassifier', () => {
  it("defaults to LeNet-5's layers on a 28x28 digit: 28 -> 14 -> 7 pixels, 784 features, 107,786 parameters", () => {
    const graph = cnnClassifier({ height: 28, width: 28, classes: 10 });
    expect(shapes(graph)).toEqual({
      'conv0.w': [5, 5, 1, 6],
      'conv0.b': [6],
      'conv1.w': [5, 5, 6, 16],
      'conv1.b': [16],
      'fc.0.w': [784, 120],
      'fc.0.b': [120],
      'fc.1.w': [120, 84],
      'fc.1.b': [84],
      'fc.2.w': [84, 10],
      'fc.2.b': [10],
    });
    expect(graph.node('x').shape).toEqual(['B', 784]);
    expect(graph.node('logits').shape).toEqual(['B', 10]);
    expect(graph.node('loss').shape).toEqual([]);
    expect(summary(graph)).toMatch(/^107,786 parameters in 10 tensors/m);
  });

  it('reads x [B, H*W*C] as the NHWC image [B, H, W, C]: bit for bit the same layers built on an image input', () => {
    const [height, width, channels] = [6, 5, 2];
    const options = { height, width, channels, filters: [3, 4], kernel: 3, hidden: [7], classes: 4 };
    const graph = cnnClassifier(options);
    const b = new GraphBuilder();
    let h = b.input('image', ['B', height, width, channels]);
    for (const [i, f] of options.filters.entries())
      h = b.maxPool2d(conv2d(b, h, f, 3, { name: `conv${i}`, padding: 1, activation: 'relu' }), 2);
    h = dense(b, b.flatten(h), 7, { name: 'fc.0', activation: 'relu' });
    b.output('logits', dense(b, h, 4, { name: 'fc.1' }));
    const byHand = b.build();
    expect(shapes(byHand)).toEqual(shapes(graph));
    // 6x5 -> 3x2 -> 1x1 pixels: the second pool rounds down.
    expect(shapes(graph)['fc.0.w']).toEqual([4, 7]);
    const params = initParams(graph, 3);
    const x = new Rng(4).normalTensor([3, height * width * channels]);
    const image = tensor(Array.from(x.data), { shape: [3, height, width, channels] });
    const model = { graph, params };
    expectBitwise(
      predict(model, { x })['logits']!,
      evaluate(byHand, { image }, params, ['logits'])['logits']!,
      'logits',
    );
  });

  it.each([
    [{ kernel: 4 }, /kernel must be an odd integer >= 1, found 4/],
    [{ filters: [4, 4, 4] }, /3 blocks halve the image 3 times, and a 6x6 image has no pixel left/],
    [{ hidden: [0] }, /hidden\[0\] must be an integer >= 1, found 0/],
    [{ height: 6.5 }, /height must be an integer >= 1, found 6.5/],
    [{ dropout: 1 }, /dropout must be in \[0, 1\), found 1/],
  ])('refuses %j with an InputError', (bad, message) => {
    const err = thrown(InputError, () => cnnClassifier({ height: 6, width: 6, classes: 3, ...bad }));
    expect(err.message).toMatch(message);
  });
});

describe('cnnClassifier on worker threads', () => {
  it('Trainer.fit, 2 workers, 2 replicas, dropout, Adam with a cosine schedule: losses and parameters bitwise equal to a reference loop over the same batches', async () => {
    const [height, width] = [8, 8];
    const graph = cnnClassifier({
      height,
      width,
      filters: [4, 6],
      kernel: 3,
      hidden: [12],
      classes: 3,
      dropout: 0.25,
    });
    const params = initParams(graph, 5);
    const rng = new Rng(6);
    const data = new Dataset(
      rng.uniformTensor([24, height * width], 0, 1),
      tensor(Array.from({ length: 24 }, () => rng.int(3))),
    );
    const spec = { name: 'adam', lr: 0.01 } as const;
    const lrSchedule = cosineLr(0.01, 6, 0.001);
    // The reference: the same batches (the order Trainer.fit draws with its seed), each step's
    // shards in their run context, the optimizer on this thread.
    const reference = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, cast(v)]));
    const run = new OptimizerRun(makeOptimizer(spec), { schedule: lrSchedule });
    const losses: number[] = [];
    const batches = data.batches({ batchSize: 8, shuffle: true, dropLast: true, seed: 7 });
    for (let epoch = 0; epoch < 2; epoch++) {
      for (const batch of batches) {
        const feeds = { x: batch.x, y: batch.y };
        const out = referenceStep(graph, feeds, reference, { replicas: 2, step: losses.length + 1 });
        losses.push(out.loss);
        run.apply(reference, out.grads);
      }
    }
    expect(losses).toHaveLength(6);

    const trainer = new Trainer(graph, { workers: 2, replicas: 2, params, optimizer: spec, lrSchedule });
    try {
      const history = await trainer.fit(data, {
        epochs: 2,
        batchSize: 8,
        seed: 7,
        progress: false,
        evalData: data,
      });
      expect(history.steps.map((s) => s.loss)).toEqual(losses);
      const trained = await trainer.params();
      expectBitwiseAll(trained, reference);
      // Evaluation (dropout off) and predict read the model as they read mlpClassifier's.
      const evaluated = evaluateClassifier(graph, trained, data);
      expect(history.epochs[1]!.evalAccuracy).toBe(evaluated.accuracy);
      const logits = predict({ graph, params: trained }, { x: data.x })['logits']!;
      expect(logits.shape).toEqual([24, 3]);
    } finally {
      await trainer.close();
    }
  });
});
