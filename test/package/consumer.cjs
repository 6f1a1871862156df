// CommonJS: Node >= 20.19 loads the ES module package with require() (no top-level await in it).
const assert = require('node:assert/strict');
const { GraphBuilder, initParams, valueAndGrad, listOps } = require('backflow-runtime');
const { version } = require('backflow-runtime/package.json');

const b = new GraphBuilder();
const w = b.param('w', [2]);
b.output('loss', b.sum(b.square(w)));
const graph = b.build();
const params = initParams(graph, 3);
const { grads } = valueAndGrad(graph, { loss: 'loss' })({}, params);
const expected = Array.from(params['w'].data, (v) => 2 * v);
assert.deepEqual(Array.from(grads['w'].data), expected);
assert.ok(listOps().includes('matmul'));
console.log(`consumer.cjs: require('backflow-runtime') ${version}: valueAndGrad of sum(w^2) is 2w`);
