// The fuzzer's steps: small functions that add a few nodes to a graph under construction. Each
// covers one op (or one structural shape, such as a dead branch) and needs the features it lists;
// the generator (generate.ts) draws among the steps whose features are on.

import type { GraphBuilder } from '../../src/graph/builder.ts';
import type { Node } from '../../src/graph/graph.ts';
import type { Rng } from '../../src/tensor/rng.ts';
import { type Domain, domainOf } from '../ops/domains.ts';
import type { Feature } from './case.ts';

/** What a step sees of the graph under construction. Values are nodes of shape [B, n]. */
export interface Ctx {
  readonly b: GraphBuilder;
  readonly rng: Rng;
  /** True if `feature` is on and a draw of probability p succeeds; records the feature as used. */
  maybe(feature: Feature, p?: number): boolean;
  /** A value, recent ones more often. */
  pick(): Node;
  /** A value of width n (a picked value sliced, padded or projected). */
  pickWidth(n: number): Node;
  /** An operand against a value of width n: another value or, with 'broadcast', a smaller shape. */
  operand(n: number, domain: Domain): Node;
  /** A parameter (with 'paramFanOut', sometimes an existing one of that shape). */
  param(shape: readonly number[]): Node;
  /** A constant drawn from a domain. */
  constant(shape: readonly number[], domain?: Domain): Node;
  /** A constant of integers in [0, n). */
  indices(shape: readonly number[], n: number): Node;
  /** The labels input y [B] (classes 0 and 1), or null without 'secondInput'. */
  labels(): Node | null;
  /** `v` mapped into a domain (e.g. exp(tanh(v)) for 'positive'). */
  into(v: Node, domain: Domain): Node;
  /** Adds a value [B, n] to the pool. */
  push(v: Node): void;
  /** Adds a scalar to the loss. */
  term(v: Node): void;
  /** Marks a value as an output the loss does not read. */
  dead(v: Node): void;
}

export interface Step {
  /** The registered op the step is about, or the name of a structural step. */
  readonly op: string;
  readonly needs?: readonly Feature[];
  build(c: Ctx): void;
}

/** Classes of the labels input y. */
export const CLASSES = 2;

const widthOf = (v: Node) => v.shape[v.shape.length - 1] as number;
const oneOf = <X>(c: Ctx, xs: readonly X[]): X => xs[c.rng.int(xs.length)]!;
/** Two factors a x b = n, a drawn from the divisors of n. */
const split = (c: Ctx, n: number): [number, number] => {
  const a = oneOf(
    c,
    Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0),
  );
  return [a, n / a];
};
const newWidth = (c: Ctx) => 1 + c.rng.int(4);

const unary = (op: string, attrs: (c: Ctx) => Record<string, unknown> = () => ({})): Step => ({
  op,
  build: (c) => {
    const a = attrs(c);
    c.push(c.b.apply(op, [c.into(c.pick(), domainOf(op, 0, a))], a));
  },
});

/** op(value, operand) in either order; with 'broadcast' the value may be a column [B, 1]. */
const binary = (op: string, needs: readonly Feature[] = [], attrs: Record<string, unknown> = {}): Step => ({
  op,
  needs,
  build: (c) => {
    const v = c.pick();
    const n = widthOf(v);
    const column = c.maybe('broadcast', 0.15);
    const swap = c.rng.next() < 0.5;
    const first = column ? c.into(c.b.mean(v, 1, true), domainOf(op, swap ? 1 : 0)) : null;
    const main = first ?? c.into(v, domainOf(op, swap ? 1 : 0));
    const other = c.operand(n, domainOf(op, swap ? 0 : 1));
    c.push(c.b.apply(op, swap ? [other, main] : [main, other], attrs));
  },
});

/** A 0/1 mask from a comparison, multiplied into a value (the gradient flows through the value). */
const comparison = (op: string): Step => ({
  op,
  needs: ['nonDiff'],
  build: (c) => {
    const v = c.pick();
    const other = c.rng.next() < 0.3 ? v : c.operand(widthOf(v), 'separated');
    c.push(c.b.mul(c.pickWidth(widthOf(v)), c.b.apply(op, [v, other])));
  },
});

/** op over the inner axis of v reshaped to [B, a, b], reshaped back. */
const rank3 = (op: string, f: (c: Ctx, r: Node) => Node): Step => ({
  op,
  needs: ['rank3'],
  build: (c) => {
    const v = c.pick();
    const [a, b] = split(c, widthOf(v));
    const out = f(c, c.b.reshape(v, ['B', a, b]));
    c.push(c.b.reshape(out, ['B', out.shape.slice(1).reduce((p: number, d) => p * (d as number), 1)]));
  },
});

const reductions = ['sum', 'mean', 'max'].flatMap((op): Step[] => [
  {
    op,
    build: (c) => {
      const v = c.pick();
      const r = c.b.apply(op, [c.into(v, domainOf(op))], { axes: [1], keepdims: true });
      c.push(c.rng.next() < 0.5 ? c.b.sub(v, r) : c.b.mul(c.pickWidth(widthOf(v)), r));
    },
  },
  {
    op,
    build: (c) => {
      const r = c.b.apply(op, [c.into(c.pick(), domainOf(op))], { axes: [1], keepdims: false });
      c.push(c.b.reshape(r, ['B', 1]));
    },
  },
  {
    op,
    build: (c) => c.term(c.b.apply(op, [c.into(c.pick(), domainOf(op))], { axes: [0, 1], keepdims: false })),
  },
  {
    op,
    needs: ['batchAxis'],
    build: (c) => {
      const v = c.pick();
      const r = c.b.apply(op, [c.into(v, domainOf(op))], { axes: [0], keepdims: c.rng.next() < 0.5 });
      c.push(c.b.mul(c.pickWidth(widthOf(v)), r));
    },
  },
  rank3(op, (c, r) => c.b.apply(op, [r], { axes: [oneOf(c, [1, 2])], keepdims: c.rng.next() < 0.5 })),
]);

const softmaxes = ['softmax', 'logSoftmax'].flatMap((op): Step[] => [
  { op, build: (c) => c.push(c.b.apply(op, [c.pick()], { axis: 1 })) },
  { op, needs: ['batchAxis'], build: (c) => c.push(c.b.apply(op, [c.pick()], { axis: 0 })) },
  rank3(op, (c, r) => c.b.apply(op, [r], { axis: oneOf(c, [1, 2]) })),
]);

/** Labels for a cross-entropy over `logits` [B, C]: y when C fits its classes, else probability rows. */
function labelsFor(c: Ctx, logits: Node): Node {
  const y = widthOf(logits) >= CLASSES ? c.labels() : null;
  return y !== null && c.rng.next() < 0.7 ? y : c.b.softmax(c.pickWidth(widthOf(logits)), 1);
}

const matmuls: Step[] = [
  {
    op: 'matmul',
    build: (c) => {
      const v = c.pick();
      const [n, m] = [widthOf(v), newWidth(c)];
      const transB = c.rng.next() < 0.4;
      c.push(c.b.matmul(v, c.param(transB ? [m, n] : [n, m]), { transB }));
    },
  },
  {
    op: 'matmul',
    needs: ['batchAxis'],
    build: (c) => {
      // A Gram matrix over the batch [n, m], used as a weight.
      const [v, u] = [c.pick(), c.pick()];
      const gram = c.b.matmul(v, u, { transA: true });
      c.push(c.b.matmul(c.pickWidth(widthOf(v)), c.b.mul(gram, 0.25)));
    },
  },
  {
    op: 'matmul',
    needs: ['batchAxis'],
    build: (c) => {
      // Attention over the rows: softmax(v u^T) w, [B, B] in between.
      const v = c.pick();
      const scores = c.b.matmul(v, c.pickWidth(widthOf(v)), { transB: true });
      c.push(c.b.matmul(c.b.softmax(scores, 1), c.pick()));
    },
  },
  rank3('matmul', (c, r) => c.b.matmul(r, c.param([r.shape[2] as number, newWidth(c)]))),
  rank3('matmul', (c, r) => {
    const [b, k] = [r.shape[2] as number, newWidth(c)];
    return c.b.matmul(r, c.b.reshape(c.pickWidth(b * k), ['B', b, k]));
  }),
  {
    op: 'matmul',
    needs: ['tiedWeights'],
    build: (c) => {
      // The same W forward and transposed, as tied embeddings; transpose(W) is a parameter-only node.
      const v = c.pick();
      const w = c.param([widthOf(v), newWidth(c)]);
      const h = c.b.tanh(c.b.matmul(v, w));
      c.push(h);
      const wT = c.maybe('paramConstOnly', 0.5) ? c.b.transpose(w) : null;
      c.push(wT ? c.b.matmul(h, wT) : c.b.matmul(h, w, { transB: true }));
    },
  },
];

const shapeOps: Step[] = [
  {
    op: 'transpose',
    build: (c) => c.push(c.b.transpose(c.b.tanh(c.b.transpose(c.pick())))),
  },
  {
    op: 'transpose',
    needs: ['batchAxis'],
    build: (c) => {
      // In [n, B], a column [n, 1] broadcasts along the batch.
      const t = c.b.transpose(c.pick());
      c.push(c.b.transpose(c.b.mul(t, c.constant([t.shape[0] as number, 1]))));
    },
  },
  rank3('transpose', (c, r) => c.b.transpose(r, [0, 2, 1])),
  {
    op: 'transpose',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.matmul(v, c.b.transpose(c.param([newWidth(c), widthOf(v)]))));
    },
  },
  {
    op: 'reshape',
    build: (c) => {
      const v = c.pick();
      c.push(c.b.reshape(c.b.sigmoid(c.b.reshape(v, ['B', 1, widthOf(v)])), ['B', widthOf(v)]));
    },
  },
  rank3('reshape', (c, r) => c.b.gelu(r)),
  {
    op: 'broadcastTo',
    build: (c) => {
      const v = c.pick();
      c.push(c.b.add(v, c.b.broadcastTo(c.b.mean(c.pick(), 1, true), ['B', widthOf(v)])));
    },
  },
  {
    op: 'broadcastTo',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      const n = widthOf(v);
      c.push(c.b.mul(v, c.b.broadcastTo(c.param(c.rng.next() < 0.5 ? [n] : [1, n]), ['B', n])));
    },
  },
  {
    op: 'concat',
    build: (c) => {
      const parts = Array.from({ length: 2 + c.rng.int(2) }, () => c.pick());
      c.push(c.b.concat(parts, 1));
    },
  },
  {
    op: 'slice',
    build: (c) => {
      const v = c.pick();
      const k = 1 + c.rng.int(widthOf(v));
      const begin = c.rng.int(widthOf(v) - k + 1);
      c.push(c.b.slice(v, [0, begin], [c.rng.next() < 0.5 ? -1 : 'B', k]));
    },
  },
  { op: 'pad', build: (c) => c.push(c.b.pad(c.pick(), [0, c.rng.int(2)], [0, c.rng.int(3)])) },
];

const lookups: Step[] = [
  {
    op: 'gather',
    build: (c) => {
      // Columns of v, repeats allowed.
      const v = c.pick();
      c.push(c.b.gather(v, c.indices([1 + c.rng.int(4)], widthOf(v)), 1));
    },
  },
  {
    op: 'gather',
    needs: ['secondInput'],
    build: (c) => c.push(c.b.gather(c.param([CLASSES, newWidth(c)]), c.labels()!)),
  },
  {
    op: 'scatterAdd',
    build: (c) => {
      const v = c.pick();
      const n = newWidth(c);
      c.push(c.b.scatterAdd(v, c.indices([widthOf(v)], n), ['B', n], 1));
    },
  },
  {
    op: 'scatterAdd',
    needs: ['secondInput'],
    build: (c) => {
      const v = c.pick();
      const sums = c.b.scatterAdd(v, c.labels()!, [CLASSES, widthOf(v)]);
      if (c.maybe('batchAxis', 0.5)) c.push(c.b.matmul(c.pickWidth(CLASSES), sums));
      else c.term(c.b.sum(c.b.square(sums)));
    },
  },
  { op: 'oneHot', needs: ['secondInput'], build: (c) => c.push(c.b.oneHot(c.labels()!, CLASSES)) },
  {
    op: 'oneHot',
    needs: ['nonDiff', 'rank3'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.reshape(c.b.oneHot(c.b.greater(v, 0), 2), ['B', 2 * widthOf(v)]));
    },
  },
  {
    op: 'oneHot',
    needs: ['paramConstOnly'],
    build: (c) => {
      const k = 1 + c.rng.int(3);
      c.push(c.b.matmul(c.pickWidth(k), c.b.oneHot(c.indices([k], 3), 3, 'float32')));
    },
  },
];

const losses: Step[] = [
  {
    op: 'softmaxCrossEntropy',
    build: (c) => {
      const logits = c.pickWidth(Math.max(CLASSES, widthOf(c.pick())));
      c.term(c.b.softmaxCrossEntropy(logits, labelsFor(c, logits)));
    },
  },
  {
    op: 'softmaxCrossEntropyGrad',
    build: (c) => {
      const logits = c.pickWidth(Math.max(CLASSES, widthOf(c.pick())));
      const scale = c.maybe('broadcast', 0.5) ? c.param([]) : c.constant([]);
      c.push(c.b.softmaxCrossEntropyGrad(logits, labelsFor(c, logits), scale));
    },
  },
  {
    op: 'mse',
    build: (c) => {
      const v = c.pick();
      c.term(
        c.b.mse(v, c.rng.next() < 0.5 ? c.pickWidth(widthOf(v)) : c.b.stopGradient(c.pickWidth(widthOf(v)))),
      );
    },
  },
];

const special: Step[] = [
  {
    op: 'stopGradient',
    needs: ['nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.stopGradient(c.b.tanh(c.pickWidth(widthOf(v))))));
    },
  },
  {
    op: 'sign',
    needs: ['nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.sign(c.pickWidth(widthOf(v)))));
    },
  },
  {
    op: 'dimSize',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      const dims = c.rng.next() < 0.5 ? ['B'] : ['B', widthOf(v)];
      c.push(c.b.div(v, c.b.apply('dimSize', [], { dims, dtype: 'float32' })));
    },
  },
  {
    op: 'weightDecay',
    needs: ['paramConstOnly'],
    build: (c) => c.term(c.b.mul(c.b.sum(c.b.square(c.param([widthOf(c.pick()), newWidth(c)]))), 0.01)),
  },
  {
    op: 'constOnly',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.exp(c.constant([widthOf(v)]))));
    },
  },
  {
    op: 'paramChain',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      const k = newWidth(c);
      const w = c.b.tanh(c.b.matmul(c.param([widthOf(v), k]), c.param([k, newWidth(c)])));
      c.push(c.b.matmul(v, w));
    },
  },
  {
    op: 'fanOut',
    needs: ['paramFanOut'],
    build: (c) => {
      const v = c.pick();
      const w = c.param([widthOf(v), widthOf(v)]);
      c.push(c.b.add(c.b.matmul(v, w), c.b.matmul(c.b.tanh(c.b.matmul(v, w)), w)));
    },
  },
  { op: 'unusedParam', needs: ['disconnectedParam'], build: (c) => void c.param([newWidth(c), newWidth(c)]) },
  {
    op: 'deadBranch',
    needs: ['disconnectedParam'],
    build: (c) => {
      const v = c.pick();
      c.dead(c.b.tanh(c.b.matmul(v, c.param([widthOf(v), newWidth(c)]))));
    },
  },
  {
    op: 'gradlessParam',
    needs: ['disconnectedParam', 'nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.stopGradient(c.b.matmul(v, c.param([widthOf(v), widthOf(v)])))));
    },
  },
];

const userOps: Step[] = [
  { ...unary('fuzzCube'), needs: ['userOps'] },
  { ...unary('fuzzSoftsign'), needs: ['userOps'] },
  {
    op: 'fuzzStep',
    needs: ['userOps', 'nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.apply('fuzzStep', [c.pickWidth(widthOf(v))])));
    },
  },
  binary('fuzzScaledMul', ['userOps'], { alpha: 0.5 }),
];

export const STEPS: readonly Step[] = [
  ...['neg', 'exp', 'log', 'sqrt', 'square', 'abs', 'tanh', 'sigmoid', 'relu', 'gelu', 'erf'].map((op) =>
    unary(op),
  ),
  unary('leakyRelu', (c) => ({ alpha: oneOf(c, [0.01, 0.2]) })),
  unary('pow', (c) => ({ exponent: oneOf(c, [2, 3, 0.5, -1, 1 / 3, 1, 0]) })),
  ...['add', 'sub', 'mul', 'div', 'maximum', 'minimum'].map((op) => binary(op)),
  ...['greater', 'greaterEqual', 'equal'].map(comparison),
  ...reductions,
  ...softmaxes,
  ...matmuls,
  ...shapeOps,
  ...lookups,
  ...losses,
  ...special,
  ...userOps,
];
