// Trains an MLP on two seeded spirals across 2 worker threads, once with every node its own actor
// (per-node placement) and once as a 2-stage pipeline (stages placement), and prints the loss as it
// falls and the final accuracy.
//
//   npx tsx examples/actors-mlp.ts [--in-process]
import { evaluate } from '../src/autodiff/engine.ts';
import { spirals } from '../src/data/synthetic.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { initParams } from '../src/graph/params.ts';
import { adam } from '../src/optim/adam.ts';
import { OptimizerRun } from '../src/optim/optimizer.ts';
import type { PlacementStrategy } from '../src/partition/placement.ts';
import { printPlan } from '../src/partition/print.ts';
import { createRuntime } from '../src/runtime/runtime.ts';

const mode = process.argv.includes('--in-process') ? 'in-process' : 'threads';
const data = spirals({ perClass: 200, noise: 0.05, seed: 1 });

const b = new GraphBuilder();
const x = b.input('x', ['B', 2]);
const y = b.input('y', ['B']);
let h = x;
for (const [i, [fanIn, fanOut]] of [
  [2, 32],
  [32, 32],
].entries()) {
  h = b.tanh(
    b.add(
      b.matmul(h, b.param(`w${i}`, [fanIn!, fanOut!])),
      b.param(`b${i}`, [fanOut!], { init: { kind: 'zeros' } }),
    ),
  );
}
const logits = b.output(
  'logits',
  b.add(b.matmul(h, b.param('wo', [32, 2])), b.param('bo', [2], { init: { kind: 'zeros' } })),
);
b.output('loss', b.softmaxCrossEntropy(logits, y));
const graph = b.build();

function accuracy(params: Record<string, import('../src/tensor/tensor.ts').Tensor>): number {
  const out = evaluate(graph, { x: data.x, y: data.y }, params, ['logits']).logits!;
  let right = 0;
  for (let i = 0; i < data.y.size; i++) {
    const guess = out.data[2 * i]! > out.data[2 * i + 1]! ? 0 : 1;
    if (guess === data.y.data[i]) right++;
  }
  return right / data.y.size;
}

for (const placement of ['per-node', 'stages'] as PlacementStrategy[]) {
  const params = initParams(graph, 7);
  const runtime = await createRuntime(graph, { mode, workers: 2, placement, microbatches: 4, params });
  console.log(`\n== ${placement} placement, ${mode} ==\n${printPlan(runtime.plan, { maxEdges: 4 })}`);
  const optimizer = new OptimizerRun(adam({ lr: 0.02 }));
  const started = performance.now();
  const steps = 600;
  try {
    for (let step = 1; step <= steps; step++) {
      const { loss, grads } = await runtime.step({ x: data.x, y: data.y });
      optimizer.apply(params, grads);
      await runtime.setParams(params);
      if (step === 1 || step % 100 === 0)
        console.log(`step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}`);
    }
  } finally {
    await runtime.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const acc = accuracy(params);
  console.log(
    `accuracy ${(acc * 100).toFixed(1)}% after ${steps} steps, ${(steps / seconds).toFixed(0)} steps/s`,
  );
  if (acc < 0.95) {
    console.error('accuracy below 95%');
    process.exitCode = 1;
  }
}
