// Every registered op against central differences in float64 (STYLE principle 10): a table over the
// registry, one entry per op, its inputs drawn from the op's domain (domains.ts, which the fuzzer
// shares). An op without an entry fails the suite.
import { describe, expect, it } from 'vitest';
import { evaluate, TRAINING_RUN, valueAndGrad } from '../../src/autodiff/engine.ts';
import type { TensorMap } from '../../src/autodiff/forward.ts';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { gradcheck } from '../../src/autodiff/gradcheck.ts';
import { edgeCarriesGrad } from '../../src/autodiff/plan.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { getOp, listOps } from '../../src/ops/registry.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { isConcrete } from '../../src/tensor/shape.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import '../../src/ops/builtins.ts';
import { expectBitwise } from '../support/expect.ts';
import { awayFromZero, drawFor, indices, mask, probabilities, t64, uniform } from './domains.ts';

type Build = (b: GraphBuilder, ...xs: Node[]) => Node;

/** A differentiable use of an op: a graph with a scalar output 'loss', its values, and what to check. */
interface Problem {
  graph: Graph;
  wrt: string[];
  feeds: TensorMap;
  params: TensorMap;
}
interface Check {
  title: string;
  setup(): Problem;
}
/** A use of a non-differentiable op: nothing may flow back through it. */
interface NoGrad {
  title: string;
  inputs: Tensor[];
  build: Build;
}
interface Entry {
  checks?: Check[];
  noGrad?: NoGrad[];
}

const TOL = { atol: 1e-6, rtol: 1e-5 };

/** sum(out * r) for a fixed random r: one scalar whose gradient checks every element of out's. */
function project(b: GraphBuilder, out: Node): Node {
  if (out.shape.length === 0) return out;
  const r = new Rng(7).uniformTensor(out.shape as number[], -1, 1, out.dtype);
  return b.sum(b.mul(out, b.const(r)));
}

/** `build` over parameters x0, x1 ... holding `inputs`; `wrt` lists the differentiable ones (default all). */
const check = (title: string, inputs: Tensor[], build: Build, wrt?: number[]): Check => ({
  title,
  setup: () => {
    const b = new GraphBuilder();
    const xs = inputs.map((t, i) => b.param(`x${i}`, t.shape, { dtype: t.dtype }));
    b.output('loss', project(b, build(b, ...xs)));
    return {
      graph: b.build(),
      wrt: (wrt ?? [...inputs.keys()]).map((i) => `x${i}`),
      feeds: {},
      params: Object.fromEntries(inputs.map((t, i) => [`x${i}`, t])),
    };
  },
});

/**
 * The op over a symbolic batch: x ['B', 3] (fed with B = 4) scaled by a parameter w [3], and class
 * indices y ['B']. Its VJP then meets symbolic shapes (a mean's 1/B is a dimSize node in gradGraph).
 */
const batched = (title: string, build: (b: GraphBuilder, xw: Node, y: Node) => Node): Check => ({
  title: `${title}, symbolic batch`,
  setup: () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3], 'float64');
    const y = b.input('y', ['B'], 'float64');
    const out = build(b, b.mul(x, b.param('w', [3], { dtype: 'float64' })), y);
    b.output('loss', out.shape.length === 0 ? out : b.sum(b.square(out)));
    const feeds = { x: uniform([4, 3]), y: t64([0, 2, 1, 2]) };
    return { graph: b.build(), wrt: ['x', 'w'], feeds, params: { w: uniform([3]) } };
  },
});

/**
 * The op over a symbolic batch of images: x ['B', 4, 4, 2] (fed with B = 3) scaled per channel by a
 * parameter s [2]; `build` may read a filter parameter k [3, 3, 2, 2].
 */
const imageBatch = (title: string, build: (b: GraphBuilder, h: Node, k: Node) => Node): Check => ({
  title: `${title}, symbolic batch`,
  setup: () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 4, 4, 2], 'float64');
    const k = b.param('k', [3, 3, 2, 2], { dtype: 'float64' });
    const out = build(b, b.mul(x, b.param('s', [2], { dtype: 'float64' })), k);
    b.output('loss', b.sum(b.square(out)));
    const params = { s: uniform([2]), k: uniform([3, 3, 2, 2]) };
    const wrt = out.inputs.some((i) => i === k.id) ? ['x', 's', 'k'] : ['x', 's'];
    return { graph: b.build(), wrt, feeds: { x: drawFor(out.op)([3, 4, 4, 2]) }, params };
  },
});

const unary = (domain: (shape: number[]) => Tensor, build: (b: GraphBuilder, x: Node) => Node): Check[] => [
  check('[2,3]', [domain([2, 3])], build),
  check('scalar', [domain([])], build),
];

/** Broadcasting cases every binary op must pass; `domain(shape, i)` draws input i. */
const BROADCASTS: [string, number[], number[]][] = [
  ['[2,3] with [2,3]', [2, 3], [2, 3]],
  ['[3,4] with [4]', [3, 4], [4]],
  ['[3,1] with [1,4]', [3, 1], [1, 4]],
  ['[2,3,4] with [3,1]', [2, 3, 4], [3, 1]],
  ['[3,4] with a scalar', [3, 4], []],
  ['a scalar with [3,4]', [], [3, 4]],
];
const binary = (
  domain: (shape: number[], i: number) => Tensor,
  build: (b: GraphBuilder, x: Node, y: Node) => Node,
): Check[] => BROADCASTS.map(([title, a, c]) => check(title, [domain(a, 0), domain(c, 1)], build));
const noGradBinary = (op: string, build: (b: GraphBuilder, x: Node, y: Node) => Node): NoGrad[] =>
  BROADCASTS.slice(0, 3).map(([title, a, c]) => ({
    title,
    inputs: [drawFor(op)(a, 0), drawFor(op)(c, 1)],
    build,
  }));

const u = (shape: number[]) => uniform(shape);

const table: Record<string, Entry> = {
  add: {
    checks: [
      ...binary(u, (b, x, y) => b.add(x, y)),
      check('fan-out add(tanh(x), exp(x))', [u([2, 3])], (b, x) => b.add(b.tanh(x), b.exp(x))),
    ],
  },
  sub: {
    checks: [
      ...binary(u, (b, x, y) => b.sub(x, y)),
      check('fan-out sub(square(x), x)', [u([3])], (b, x) => b.sub(b.square(x), x)),
    ],
  },
  mul: {
    checks: [
      ...binary(u, (b, x, y) => b.mul(x, y)),
      check('fan-out mul(x, x)', [u([2, 3])], (b, x) => b.mul(x, x)),
      check('fan-out over three consumers', [u([4])], (b, x) => b.mul(b.mul(x, b.tanh(x)), x)),
    ],
  },
  div: {
    checks: [
      ...binary(drawFor('div'), (b, x, y) => b.div(x, y)),
      check('fan-out x / (x^2 + 1)', [u([2, 3])], (b, x) => b.div(x, b.add(b.square(x), 1))),
    ],
  },
  maximum: {
    checks: [
      ...binary(drawFor('maximum'), (b, x, y) => b.maximum(x, y)),
      check('fan-out maximum(x, -x)', [awayFromZero([5])], (b, x) => b.maximum(x, b.neg(x))),
    ],
  },
  minimum: {
    checks: [
      ...binary(drawFor('minimum'), (b, x, y) => b.minimum(x, y)),
      check('fan-out minimum(x, -x)', [awayFromZero([5])], (b, x) => b.minimum(x, b.neg(x))),
    ],
  },
  greater: { noGrad: noGradBinary('greater', (b, x, y) => b.greater(x, y)) },
  greaterEqual: { noGrad: noGradBinary('greaterEqual', (b, x, y) => b.greaterEqual(x, y)) },
  equal: { noGrad: noGradBinary('equal', (b, x, y) => b.equal(x, y)) },
  neg: { checks: unary(u, (b, x) => b.neg(x)) },
  exp: { checks: unary(u, (b, x) => b.exp(x)) },
  log: { checks: unary(drawFor('log'), (b, x) => b.log(x)) },
  sqrt: { checks: unary(drawFor('sqrt'), (b, x) => b.sqrt(x)) },
  square: { checks: unary(u, (b, x) => b.square(x)) },
  pow: {
    checks: [
      check('exponent 2', [u([2, 3])], (b, x) => b.pow(x, 2)),
      check('exponent 3', [u([2, 3])], (b, x) => b.pow(x, 3)),
      check('exponent 0.5 (positive inputs)', [drawFor('pow', { exponent: 0.5 })([2, 3])], (b, x) =>
        b.pow(x, 0.5),
      ),
      check('exponent -1', [drawFor('pow', { exponent: -1 })([2, 3])], (b, x) => b.pow(x, -1)),
      check('exponent 1/3 (positive inputs)', [drawFor('pow', { exponent: 1 / 3 })([4])], (b, x) =>
        b.pow(x, 1 / 3),
      ),
      check('exponent 1', [u([4])], (b, x) => b.pow(x, 1)),
    ],
  },
  abs: { checks: unary(drawFor('abs'), (b, x) => b.abs(x)) },
  sign: { noGrad: [{ title: '[2,3]', inputs: [drawFor('sign')([2, 3])], build: (b, x) => b.sign(x) }] },
  tanh: { checks: unary(u, (b, x) => b.tanh(x)) },
  sigmoid: {
    checks: unary(
      (s) => uniform(s, -4, 4),
      (b, x) => b.sigmoid(x),
    ),
  },
  relu: { checks: unary(drawFor('relu'), (b, x) => b.relu(x)) },
  leakyRelu: {
    checks: [
      ...unary(drawFor('leakyRelu'), (b, x) => b.leakyRelu(x)),
      check('alpha 0.2', [drawFor('leakyRelu')([6])], (b, x) => b.leakyRelu(x, 0.2)),
    ],
  },
  gelu: {
    checks: unary(
      (s) => uniform(s, -3, 3),
      (b, x) => b.gelu(x),
    ),
  },
  // Its own VJP, phi(x) (2 - x^2), is primitives: gelu's second derivative, through both ops.
  geluGrad: {
    checks: [
      ...unary(
        (s) => uniform(s, -3, 3),
        (b, x) => b.geluGrad(x),
      ),
      check('tails', [t64([-6, -4.5, 4.5, 6])], (b, x) => b.geluGrad(x)),
    ],
  },
  // Both sides of erf's switch from the series to the continued fraction at |x| = 3.
  erf: {
    checks: [
      ...unary(u, (b, x) => b.erf(x)),
      check('tails', [t64([-4, -3.2, -2.8, 2.8, 3.2, 4])], (b, x) => b.erf(x)),
    ],
  },
  matmul: {
    checks: [
      check('A B', [u([3, 4]), u([4, 5])], (b, x, y) => b.matmul(x, y)),
      check('A^T B', [u([4, 3]), u([4, 5])], (b, x, y) => b.matmul(x, y, { transA: true })),
      check('A B^T', [u([3, 4]), u([5, 4])], (b, x, y) => b.matmul(x, y, { transB: true })),
      check('A^T B^T', [u([4, 3]), u([5, 4])], (b, x, y) => b.matmul(x, y, { transA: true, transB: true })),
      check('batched [2,1,3,4] x [3,4,2]', [u([2, 1, 3, 4]), u([3, 4, 2])], (b, x, y) => b.matmul(x, y)),
      check('batched [2,3,4] x [4,5]', [u([2, 3, 4]), u([4, 5])], (b, x, y) => b.matmul(x, y)),
      check('batched transposed [2,4,3]^T x [1,2,4]^T', [u([2, 4, 3]), u([1, 2, 4])], (b, x, y) =>
        b.matmul(x, y, { transA: true, transB: true }),
      ),
      check('fan-out x x^T', [u([3, 2])], (b, x) => b.matmul(x, x, { transB: true })),
    ],
  },
  transpose: {
    checks: [
      check('3-D perm [2,0,1]', [u([2, 3, 4])], (b, x) => b.transpose(x, [2, 0, 1])),
      check('default reverses the axes', [u([2, 3])], (b, x) => b.transpose(x)),
    ],
  },
  reshape: {
    checks: [
      check('[2,3,4] to [4,-1]', [u([2, 3, 4])], (b, x) => b.reshape(x, [4, -1])),
      check('to a scalar', [u([1, 1])], (b, x) => b.reshape(x, [])),
      batched('to [B,3,1]', (b, h) => b.reshape(h, ['B', 3, 1])),
    ],
  },
  broadcastTo: {
    checks: [
      check('[3,1] to [2,3,4]', [u([3, 1])], (b, x) => b.broadcastTo(x, [2, 3, 4])),
      check('scalar to [2,2]', [u([])], (b, x) => b.broadcastTo(x, [2, 2])),
    ],
  },
  sum: {
    checks: [
      check('axes [0,2]', [u([2, 3, 4])], (b, x) => b.sum(x, [0, 2])),
      check('axes [0,2] keepdims', [u([2, 3, 4])], (b, x) => b.sum(x, [0, 2], true)),
      check('axis -1', [u([2, 3])], (b, x) => b.sum(x, -1)),
      check('all axes', [u([2, 3])], (b, x) => b.sum(x)),
      check('fan-out sum(x) * x', [u([3])], (b, x) => b.mul(b.sum(x), x)),
      batched('axis 0 keepdims', (b, h) => b.sum(h, 0, true)),
    ],
  },
  mean: {
    checks: [
      check('axes [0,2]', [u([2, 3, 4])], (b, x) => b.mean(x, [0, 2])),
      check('axes [1,2] keepdims', [u([2, 3, 4])], (b, x) => b.mean(x, [1, 2], true)),
      check('all axes', [u([2, 3])], (b, x) => b.mean(x)),
      batched('axis 0', (b, h) => b.mean(h, 0)),
    ],
  },
  max: {
    checks: [
      check('axis 1', [drawFor('max')([3, 4])], (b, x) => b.max(x, 1)),
      check('axes [0,2] keepdims', [drawFor('max')([2, 3, 4])], (b, x) => b.max(x, [0, 2], true)),
      check('all axes', [drawFor('max')([2, 3])], (b, x) => b.max(x)),
      batched('axis 1', (b, h) => b.max(h, 1)),
    ],
  },
  softmax: {
    checks: [
      check('last axis', [u([2, 4])], (b, x) => b.softmax(x)),
      check('axis 0 of [3,4]', [u([3, 4])], (b, x) => b.softmax(x, 0)),
      check('axis 1 of [2,3,2]', [u([2, 3, 2])], (b, x) => b.softmax(x, 1)),
    ],
  },
  logSoftmax: {
    checks: [
      check('last axis', [u([2, 4])], (b, x) => b.logSoftmax(x)),
      check('axis 0 of [3,4]', [u([3, 4])], (b, x) => b.logSoftmax(x, 0)),
      check('axis 1 of [2,3,2]', [u([2, 3, 2])], (b, x) => b.logSoftmax(x, 1)),
    ],
  },
  softmaxCrossEntropy: {
    checks: [
      check('integer labels', [u([4, 3]), t64([0, 2, 1, 2])], (b, z, y) => b.softmaxCrossEntropy(z, y), [0]),
      check(
        'one-hot rows (logits and rows)',
        [
          u([3, 4]),
          t64([
            [0, 1, 0, 0],
            [0, 0, 0, 1],
            [1, 0, 0, 0],
          ]),
        ],
        (b, z, y) => b.softmaxCrossEntropy(z, y),
      ),
      check('probability rows (logits and rows)', [u([3, 4]), probabilities(3, 4)], (b, z, y) =>
        b.softmaxCrossEntropy(z, y),
      ),
      check(
        '[2,3,4] logits, [2,3] labels',
        [u([2, 3, 4]), indices([2, 3], 4)],
        (b, z, y) => b.softmaxCrossEntropy(z, y),
        [0],
      ),
      batched('integer labels', (b, h, y) => b.softmaxCrossEntropy(h, y)),
    ],
  },
  softmaxCrossEntropyGrad: {
    checks: [
      check(
        'integer labels (logits and scale)',
        [u([4, 3]), t64([0, 2, 1, 2]), t64(0.7)],
        (b, z, y, s) => b.softmaxCrossEntropyGrad(z, y, s),
        [0, 2],
      ),
      check(
        'probability rows (logits, rows and scale)',
        [u([3, 4]), probabilities(3, 4), t64(-1.3)],
        (b, z, y, s) => b.softmaxCrossEntropyGrad(z, y, s),
      ),
      check(
        '[2,3,4] logits, [2,3] labels',
        [u([2, 3, 4]), indices([2, 3], 4), t64(0.25)],
        (b, z, y, s) => b.softmaxCrossEntropyGrad(z, y, s),
        [0, 2],
      ),
    ],
  },
  mse: {
    checks: [
      check('[2,3]', [u([2, 3]), u([2, 3])], (b, x, y) => b.mse(x, y)),
      check('fan-out mse(x, tanh(x))', [u([4])], (b, x) => b.mse(x, b.tanh(x))),
      batched('mse(h, tanh(h))', (b, h) => b.mse(h, b.tanh(h))),
    ],
  },
  concat: {
    checks: [
      check('axis 1', [u([2, 3]), u([2, 1]), u([2, 2])], (b, x, y, z) => b.concat([x, y, z], 1)),
      check('axis 0', [u([1, 3]), u([2, 3])], (b, x, y) => b.concat([x, y], 0)),
      check('fan-out concat([x, x])', [u([2])], (b, x) => b.concat([x, x])),
    ],
  },
  slice: {
    checks: [
      check('[3,4,5] begin [1,0,2] size [2,-1,2]', [u([3, 4, 5])], (b, x) =>
        b.slice(x, [1, 0, 2], [2, -1, 2]),
      ),
      check('a row', [u([3, 4])], (b, x) => b.slice(x, [2, 0], [1, 4])),
      batched('size [B,2]', (b, h) => b.slice(h, [0, 1], ['B', 2])),
    ],
  },
  pad: {
    checks: [
      check('[2,3] before [1,0] after [2,1]', [u([2, 3])], (b, x) => b.pad(x, [1, 0], [2, 1])),
      check('no padding on axis 1 of [2,2,2]', [u([2, 2, 2])], (b, x) => b.pad(x, [0, 0, 1], [1, 0, 0])),
    ],
  },
  // Repeated indices: the gradient must add the duplicates (the numeric gradient does).
  gather: {
    checks: [
      check('rows [0,2,2,4,0] of [5,3]', [u([5, 3]), t64([0, 2, 2, 4, 0])], (b, t, i) => b.gather(t, i), [0]),
      check(
        'axis 1 with [2,2] indices',
        [
          u([2, 4, 3]),
          t64([
            [3, 1],
            [1, 1],
          ]),
        ],
        (b, t, i) => b.gather(t, i, 1),
        [0],
      ),
      batched('rows y of [B,3]', (b, h, y) => b.gather(h, y)),
    ],
  },
  scatterAdd: {
    checks: [
      check(
        '[4,3] into [5,3] at [1,3,1,0]',
        [u([4, 3]), t64([1, 3, 1, 0])],
        (b, x, i) => b.scatterAdd(x, i, [5, 3]),
        [0],
      ),
      check('axis 1', [u([2, 3]), t64([0, 2, 0])], (b, x, i) => b.scatterAdd(x, i, [2, 4], 1), [0]),
    ],
  },
  conv2d: {
    checks: [
      check('3x3 over [1,4,4,2], 3 filters', [u([1, 4, 4, 2]), u([3, 3, 2, 3])], (b, x, w) => b.conv2d(x, w)),
      check('stride 2, padding 1', [u([2, 5, 5, 2]), u([3, 3, 2, 2])], (b, x, w) =>
        b.conv2d(x, w, { stride: 2, padding: 1 }),
      ),
      check('dilation 2, padding [1,0], stride [1,2]', [u([1, 5, 6, 1]), u([2, 2, 1, 2])], (b, x, w) =>
        b.conv2d(x, w, { dilation: 2, padding: [1, 0], stride: [1, 2] }),
      ),
      check('2 groups, padding 1', [u([1, 4, 4, 4]), u([2, 2, 2, 4])], (b, x, w) =>
        b.conv2d(x, w, { groups: 2, padding: 1 }),
      ),
      check('depthwise (3 groups of 1 channel)', [u([1, 3, 3, 3]), u([2, 2, 1, 3])], (b, x, w) =>
        b.conv2d(x, w, { groups: 3 }),
      ),
      imageBatch('3x3, padding 1', (b, h, k) => b.conv2d(h, k, { padding: 1 })),
    ],
  },
  conv2dInputGrad: {
    checks: [
      check('3x3 filter onto 5x5', [u([1, 3, 3, 3]), u([3, 3, 2, 3])], (b, g, w) =>
        b.conv2dInputGrad(g, w, [5, 5]),
      ),
      check(
        'stride 2, padding 1 onto 6x6 (5x5 gives the same output)',
        [u([2, 3, 3, 2]), u([3, 3, 2, 2])],
        (b, g, w) => b.conv2dInputGrad(g, w, [6, 6], { stride: 2, padding: 1 }),
      ),
      check('2 groups, dilation 2', [u([1, 2, 2, 4]), u([2, 2, 2, 4])], (b, g, w) =>
        b.conv2dInputGrad(g, w, [4, 4], { groups: 2, dilation: 2 }),
      ),
    ],
  },
  conv2dWeightGrad: {
    checks: [
      check('3x3 from [1,5,5,2] and [1,3,3,3]', [u([1, 5, 5, 2]), u([1, 3, 3, 3])], (b, x, g) =>
        b.conv2dWeightGrad(x, g, [3, 3]),
      ),
      check('dilation 2, stride [2,1], padding 1', [u([2, 5, 5, 1]), u([2, 3, 5, 2])], (b, x, g) =>
        b.conv2dWeightGrad(x, g, [2, 2], { dilation: 2, stride: [2, 1], padding: 1 }),
      ),
      check('2 groups', [u([1, 4, 4, 4]), u([1, 3, 3, 4])], (b, x, g) =>
        b.conv2dWeightGrad(x, g, [2, 2], { groups: 2 }),
      ),
    ],
  },
  maxPool2d: {
    checks: [
      check('2x2 windows side by side', [drawFor('maxPool2d')([2, 4, 4, 2])], (b, x) => b.maxPool2d(x, 2)),
      check('3x3, stride 1, padding 1 (overlapping windows)', [drawFor('maxPool2d')([1, 4, 4, 2])], (b, x) =>
        b.maxPool2d(x, 3, { stride: 1, padding: 1 }),
      ),
      check('[2,3] windows, stride [1,2]', [drawFor('maxPool2d')([1, 3, 5, 1])], (b, x) =>
        b.maxPool2d(x, [2, 3], { stride: [1, 2] }),
      ),
      imageBatch('2x2', (b, h) => b.maxPool2d(h, 2)),
    ],
  },
  // No gradient flows to the image (its maxima's places are flat in it): wrt the cotangent only.
  maxPool2dGrad: {
    checks: [
      check(
        '2x2 windows side by side',
        [drawFor('maxPool2dGrad')([1, 4, 4, 2], 0), u([1, 2, 2, 2])],
        (b, x, g) => b.maxPool2dGrad(x, g, 2),
        [1],
      ),
      check(
        '3x3, stride 1, padding 1: maxima shared by windows add up',
        [drawFor('maxPool2dGrad')([1, 4, 4, 1], 0), u([1, 4, 4, 1])],
        (b, x, g) => b.maxPool2dGrad(x, g, 3, { stride: 1, padding: 1 }),
        [1],
      ),
    ],
  },
  maxPool2dSelect: {
    checks: [
      check(
        '2x2 windows side by side',
        [drawFor('maxPool2dSelect')([1, 4, 4, 2], 0), u([1, 4, 4, 2])],
        (b, x, h) => b.maxPool2dSelect(x, h, 2),
        [1],
      ),
      check(
        '3x3, stride 1, padding 1',
        [drawFor('maxPool2dSelect')([1, 4, 4, 1], 0), u([1, 4, 4, 1])],
        (b, x, h) => b.maxPool2dSelect(x, h, 3, { stride: 1, padding: 1 }),
        [1],
      ),
    ],
  },
  avgPool2d: {
    checks: [
      check('2x2 windows side by side', [u([2, 4, 4, 2])], (b, x) => b.avgPool2d(x, 2)),
      check('3x3, stride 1, padding 1 (padding counts)', [u([1, 4, 4, 2])], (b, x) =>
        b.avgPool2d(x, 3, { stride: 1, padding: 1 }),
      ),
      check('[2,3] windows, stride [1,2]', [u([1, 3, 5, 1])], (b, x) =>
        b.avgPool2d(x, [2, 3], { stride: [1, 2] }),
      ),
      imageBatch('2x2', (b, h) => b.avgPool2d(h, 2)),
    ],
  },
  avgPool2dGrad: {
    checks: [
      check('2x2 onto 4x4', [u([1, 2, 2, 2])], (b, g) => b.avgPool2dGrad(g, [4, 4], 2)),
      check('3x3, stride 1, padding 1', [u([1, 4, 4, 1])], (b, g) =>
        b.avgPool2dGrad(g, [4, 4], 3, { stride: 1, padding: 1 }),
      ),
      check('2x2 onto 5x5 (the last row and column take nothing)', [u([2, 2, 2, 1])], (b, g) =>
        b.avgPool2dGrad(g, [5, 5], 2),
      ),
    ],
  },
  // The mask is an input of its own, never in wrt (no gradient flows to it).
  where: {
    checks: [
      check('mask [2,3]', [mask([2, 3]), u([2, 3]), u([2, 3])], (b, c, x, y) => b.where(c, x, y), [1, 2]),
      check(
        'mask [3] over [2,3], b a scalar',
        [mask([3]), u([2, 3]), u([])],
        (b, c, x, y) => b.where(c, x, y),
        [1, 2],
      ),
      check(
        'mask [2,1], a [1,3], b [2,3]',
        [mask([2, 1]), u([1, 3]), u([2, 3])],
        (b, c, x, y) => b.where(c, x, y),
        [1, 2],
      ),
      check('where(x > 0, x, 0.1 x), a leaky relu', [awayFromZero([5])], (b, x) =>
        b.where(b.greater(x, 0), x, b.mul(x, 0.1)),
      ),
    ],
  },
  argmax: {
    noGrad: [
      { title: 'axis 1 of [3,4]', inputs: [drawFor('argmax')([3, 4])], build: (b, x) => b.argmax(x, 1) },
      { title: 'axis 0 of [3,4]', inputs: [drawFor('argmax')([3, 4])], build: (b, x) => b.argmax(x, 0) },
    ],
  },
  oneHot: { noGrad: [{ title: 'depth 4', inputs: [indices([5], 4)], build: (b, i) => b.oneHot(i, 4) }] },
  stopGradient: { noGrad: [{ title: '[2,3]', inputs: [u([2, 3])], build: (b, x) => b.stopGradient(x) }] },
  // The run's key as a value: nothing to differentiate (Note [run context] in src/ops/step-key.ts).
  stepKey: { noGrad: [{ title: 'no inputs', inputs: [], build: (b) => b.apply('stepKey', []) }] },
  // With a fixed key (a fixed mask) dropout is linear in x; the key takes no gradient. The run's own
  // key draws the mask of the run both sides of gradcheck compute in (a training step).
  dropout: {
    checks: [
      check(
        'fixed mask, rate 0.5',
        [u([4, 5]), t64([7, 1, 0, 1])],
        (b, x, k) => b.dropout(x, 0.5, { key: k }),
        [0],
      ),
      check(
        'fixed mask, seed 3, rate 0.2',
        [u([3, 4]), t64([2, 0, 1, 1])],
        (b, x, k) => b.dropout(b.tanh(x), 0.2, { key: k, seed: 3 }),
        [0],
      ),
      check(
        'evaluation mode (the identity)',
        [u([2, 3]), t64([2, 0, 1, 0])],
        (b, x, k) => b.dropout(x, 0.5, { key: k }),
        [0],
      ),
      check('the run key, rate 0.3', [u([3, 4])], (b, x) => b.dropout(x, 0.3)),
    ],
  },
  // dimSize has no inputs, so no edge to carry anything; it is the 1/B of a mean's VJP when B is symbolic.
  dimSize: {
    noGrad: [
      {
        title: 'no inputs',
        inputs: [],
        build: (b) => b.apply('dimSize', [], { dims: [2, 3], dtype: 'float64' }),
      },
    ],
    checks: [batched('mean', (b, h) => b.mean(b.square(h)))],
  },
};

/** Nothing flows back through the op: every input slot is closed, and a direct path alone sets the gradient. */
function expectNoGradient(op: string, { inputs, build }: NoGrad): void {
  const def = getOp(op);
  for (let slot = 0; slot < inputs.length; slot++) expect(edgeCarriesGrad(def, slot)).toBe(false);
  const b = new GraphBuilder();
  const xs = inputs.map((t, i) => b.param(`x${i}`, t.shape, { dtype: 'float64' }));
  const out = build(b, ...xs);
  const r = new Rng(1).uniformTensor(out.shape as number[], -1, 1, 'float64');
  // loss = sum(op(xs) * r) + sum over i of sum(x_i): only the direct terms may contribute.
  let loss = b.sum(b.mul(out, b.const(r)));
  for (const x of xs) loss = b.add(loss, b.sum(x));
  b.output('loss', loss);
  const params = Object.fromEntries(inputs.map((t, i) => [`x${i}`, t]));
  const { value, grads } = valueAndGrad(b.build(), { loss: 'loss' })({}, params);
  expect(Number.isFinite(value.item())).toBe(true);
  for (const [i, t] of inputs.entries())
    expect(Array.from(grads[`x${i}`]!.data)).toEqual(Array(t.size).fill(1));
  if (inputs.length === 0) expect(def.arity).toBe(0);
}

describe('gradcheck: every registered op', () => {
  it('has a table entry for every op in the registry', () => {
    const missing = listOps().filter((op) => !(op in table));
    expect(missing, `ops without a gradcheck entry: ${missing.join(', ')}`).toEqual([]);
    const stale = Object.keys(table).filter((op) => !listOps().includes(op));
    expect(stale).toEqual([]);
  });

  it('gradGraph of a mean over a symbolic batch counts B with a dimSize node', () => {
    const { graph } = batched('mean', (b, h) => b.mean(h)).setup();
    const added = gradGraph(graph, { loss: 'loss' }).nodes.slice(graph.size);
    expect(added.filter((n) => n.op === 'dimSize').map((n) => n.attrs['dims'])).toEqual([['B', 3]]);
  });

  it('gradchecks ops that have a VJP, and only those', () => {
    for (const [op, entry] of Object.entries(table)) {
      expect(entry.checks ?? entry.noGrad, op).toBeDefined();
      if (op !== 'dimSize') expect(getOp(op).vjp !== undefined, op).toBe(entry.checks !== undefined);
    }
  });

  describe.each(Object.keys(table).sort())('%s', (op) => {
    const entry = table[op]!;
    const checks = entry.checks ?? [];
    const noGrads = entry.noGrad ?? [];
    if (checks.length > 0) {
      it.each(checks.map((c) => [c.title, c] as const))('gradcheck: %s', (_, c) => {
        const { graph, wrt, feeds, params } = c.setup();
        const report = gradcheck(graph, { loss: 'loss', wrt, feeds, params, ...TOL });
        expect(report.failures).toEqual([]);
        expect(report.checked).toBeGreaterThan(0);
      });
      // G+B is an ordinary graph: it must agree with the reference engine bit for bit, and its own
      // gradients (second derivatives, through the ops VJPs are built from) must pass gradcheck.
      it.each(checks.map((c) => [c.title, c] as const))('gradGraph, then its gradient: %s', (_, c) => {
        const { graph, wrt, feeds, params } = c.setup();
        const quiet = { onWarning: () => {} };
        const { grads } = valueAndGrad(graph, { loss: 'loss', wrt, ...quiet })(feeds, params);
        const gg = gradGraph(graph, { loss: 'loss', wrt, ...quiet });
        // In the run valueAndGrad computes in by default (dropout draws that step's mask).
        const symbolic = evaluate(
          gg,
          feeds,
          params,
          wrt.map((w) => `grad:${w}`),
          TRAINING_RUN,
        );
        for (const w of wrt) expectBitwise(symbolic[`grad:${w}`]!, grads[w]!, w);
        // gradcheck projects a non-scalar output with a random tensor: it needs one of concrete shape.
        const second = wrt.map((w) => `grad:${w}`).find((g) => isConcrete(gg.node(g).shape))!;
        const report = gradcheck(gg, { loss: second, wrt, feeds, params, ...TOL });
        expect(report.failures).toEqual([]);
      });
    }
    if (noGrads.length > 0) {
      it.each(noGrads.map((c) => [c.title, c] as const))('no gradient flows: %s', (_, c) =>
        expectNoGradient(op, c),
      );
    }
  });
});
