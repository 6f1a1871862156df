// Trains an MLP on two seeded spirals across 2 worker threads, once with every node its own actor
// (per-node placement) and once as a 2-stage pipeline (stages placement), and prints the loss as it
// falls and the final accuracy.
//
//   npx tsx examples/actors-mlp.ts [--in-process]
import {
  createRuntime,
  Dataset,
  evaluateClassifier,
  GraphBuilder,
  initParams,
  type PlacementStrategy,
  printPlan,
  spirals,
  type Tensor,
} from 'backflow-runtime';

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

for (const placement of ['per-node', 'stages'] as PlacementStrategy[]) {
  // Adam runs on the workers that hold the parameters: a step returns the loss, and the parameters
  // are read back once at the end.
  const runtime = await createRuntime(graph, {
    mode,
    workers: 2,
    placement,
    microbatches: 4,
    params: initParams(graph, 7),
    optimizer: { name: 'adam', lr: 0.02 },
  });
  console.log(`\n== ${placement} placement, ${mode} ==\n${printPlan(runtime.plan, { maxEdges: 4 })}`);
  const started = performance.now();
  const steps = 600;
  let params: Record<string, Tensor>;
  try {
    for (let step = 1; step <= steps; step++) {
      const { loss } = await runtime.step({ x: data.x, y: data.y });
      if (step === 1 || step % 100 === 0)
        console.log(`step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}`);
    }
    params = await runtime.getParams();
  } finally {
    await runtime.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const acc = evaluateClassifier(graph, params, new Dataset(data.x, data.y)).accuracy!;
  console.log(
    `accuracy ${(acc * 100).toFixed(1)}% after ${steps} steps, ${(steps / seconds).toFixed(0)} steps/s`,
  );
  if (acc < 0.95) {
    console.error('accuracy below 95%');
    process.exitCode = 1;
  }
}
