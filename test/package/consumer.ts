// A library user's first program, in TypeScript (strict, nodenext), against the installed tarball's
// types (test/package/check.sh compiles it there and runs the output): a graph, valueAndGrad, a
// 2-worker pipeline step with a trace, and the public types it needs.
import assert from 'node:assert/strict';
import {
  bitwiseEqual,
  compile,
  createRuntime,
  GraphBuilder,
  initParams,
  printPlan,
  type RuntimeOptions,
  referenceStep,
  type StepResult,
  type Tensor,
  type TensorMap,
  tensor,
  toChromeTrace,
  valueAndGrad,
} from 'backflow-runtime';

const b = new GraphBuilder();
const x = b.input('x', ['B', 3]);
const y = b.input('y', ['B']);
const h = b.relu(b.matmul(x, b.param('w1', [3, 8])));
b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('w2', [8, 2])), y));
const graph = b.build();

const params: TensorMap = initParams(graph, 2);
const feeds: Record<string, Tensor> = {
  x: tensor([
    [0.1, 0.2, 0.3],
    [0.4, 0.5, 0.6],
    [0.7, 0.8, 0.9],
    [1.0, 1.1, 1.2],
  ]),
  y: tensor([1, 0, 1, 0]),
};
const { value } = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
assert.ok(Number.isFinite(value.item()));

const options: RuntimeOptions = { workers: 2, schedule: '1f1b', microbatches: 2, params, trace: true };
assert.match(printPlan(compile(graph, { workers: 2, placement: 'stages' })), /worker 1/);
const runtime = await createRuntime(graph, options);
let step: StepResult;
try {
  step = await runtime.step(feeds);
} finally {
  await runtime.close();
}
const reference = referenceStep(graph, feeds, params, { microbatches: 2 });
assert.equal(step.loss, reference.loss);
for (const [name, g] of Object.entries(reference.grads)) assert.ok(bitwiseEqual(step.grads[name]!, g), name);
// `trace` is there only when the runtime records one: the type says so.
assert.ok(step.trace !== undefined && toChromeTrace(step.trace).traceEvents.length > 0);
console.log('consumer.ts: a 2-stage 1F1B step on 2 workers, bitwise equal to the reference, with a trace');
