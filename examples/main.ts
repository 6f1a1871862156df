// The main job (`npm start`): trains an MLP classifier on two seeded spirals, data-parallel across
// 2 worker threads (one replica each), and shows the loss falling and the accuracy reached.
import { evaluate } from '../src/autodiff/engine.ts';
import { spirals } from '../src/data/synthetic.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { initParams } from '../src/graph/params.ts';
import { adam } from '../src/optim/adam.ts';
import { OptimizerRun } from '../src/optim/optimizer.ts';
import { createRuntime } from '../src/runtime/runtime.ts';
import type { Tensor } from '../src/tensor/tensor.ts';

const train = spirals({ perClass: 256, noise: 0.05, seed: 1 });
const test = spirals({ perClass: 128, noise: 0.05, seed: 2 });

const b = new GraphBuilder();
const x = b.input('x', ['B', 2]);
const y = b.input('y', ['B']);
const dense = (h: typeof x, name: string, fanIn: number, fanOut: number) =>
  b.add(
    b.matmul(h, b.param(`${name}.w`, [fanIn, fanOut])),
    b.param(`${name}.b`, [fanOut], { init: { kind: 'zeros' } }),
  );
const h1 = b.tanh(dense(x, 'l1', 2, 64));
const h2 = b.tanh(dense(h1, 'l2', 64, 64));
const logits = b.output('logits', dense(h2, 'out', 64, 2));
b.output('loss', b.softmaxCrossEntropy(logits, y));
const graph = b.build();

const params = initParams(graph, 7);
const runtime = await createRuntime(graph, { workers: 2, replicas: 2, microbatches: 2, params });
const optimizer = new OptimizerRun(adam({ lr: 0.01 }));

function accuracy(set: typeof test, p: Record<string, Tensor>): number {
  const out = evaluate(graph, { x: set.x, y: set.y }, p, ['logits']).logits!;
  let right = 0;
  for (let i = 0; i < set.y.size; i++)
    if ((out.data[2 * i]! > out.data[2 * i + 1]! ? 0 : 1) === set.y.data[i]) right++;
  return right / set.y.size;
}

const bar = (loss: number) => '#'.repeat(Math.max(1, Math.round(loss * 40)));
console.log(
  `backflow: MLP 2-64-64-2 on two spirals (${train.y.size} points), 2 worker threads, data-parallel (2 replicas x 2 microbatches)\n`,
);
const started = performance.now();
const steps = 500;
try {
  for (let step = 1; step <= steps; step++) {
    const { loss, grads } = await runtime.step({ x: train.x, y: train.y });
    optimizer.apply(params, grads);
    await runtime.setParams(params);
    if (step === 1 || step % 50 === 0)
      console.log(`step ${String(step).padStart(3)}  loss ${loss.toFixed(4)}  ${bar(loss)}`);
  }
} finally {
  await runtime.close();
}
const seconds = (performance.now() - started) / 1000;
console.log(
  `\n${steps} steps in ${seconds.toFixed(1)} s (${((steps * train.y.size) / seconds).toFixed(0)} samples/s)`,
);
console.log(`test accuracy ${(accuracy(test, params) * 100).toFixed(1)}%`);
