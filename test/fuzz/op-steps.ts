// One or more fuzz steps per registered op, each applying the op within its domain (domains.ts) to
// values of varied shapes; variants that need a feature (rank-3 values, the batch axis ...) list it.
import type { Node } from '../../src/graph/graph.ts';
import { domainOf } from '../ops/domains.ts';
import { IMAGE_STEPS } from './image-steps.ts';
import { binary, CLASSES, type Ctx, newWidth, oneOf, type Step, split, unary, widthOf } from './step.ts';

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

/** Masks in use: where over a comparison or a constant 0/1 mask; argmax as class indices. */
const masks: Step[] = [
  {
    op: 'where',
    needs: ['masks'],
    build: (c) => {
      // The other value a literal (masked_fill), or another value, possibly broadcast.
      const v = c.pick();
      const n = widthOf(v);
      const mask = c.b.greater(c.pickWidth(n), c.operand(n, 'separated'));
      c.push(c.rng.next() < 0.4 ? c.b.where(mask, v, -3) : c.b.where(mask, c.operand(n, 'real'), v));
    },
  },
  {
    op: 'where',
    needs: ['masks'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.where(c.indices([widthOf(v)], 2), c.pickWidth(widthOf(v)), v));
    },
  },
  {
    op: 'argmax',
    needs: ['masks'],
    build: (c) => {
      // The one-hot row of each row's maximum, as a mask.
      const v = c.pick();
      c.push(c.b.mul(c.pickWidth(widthOf(v)), c.b.oneHot(c.b.argmax(v, 1), widthOf(v))));
    },
  },
  {
    op: 'argmax',
    needs: ['masks', 'batchAxis'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(c.pickWidth(widthOf(v)), c.b.argmax(v, 0)));
    },
  },
];

/** The steps whose ops carry no gradient, or make a parameter-only node. */
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
];

export const OP_STEPS: readonly Step[] = [
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
];

/**
 * Steps of ops registered after the first regressions were recorded. A new op's steps go here, at
 * the end of STEPS: a case draws among the first `FuzzCase.ops` ops (generate.ts), so a recorded
 * case keeps building its graph when ops are added.
 */
export const ADDED_OP_STEPS: readonly Step[] = [
  // Dropout draws its mask from the run's key (Note [run context]): the runtime's shards must draw
  // referenceStep's, on activations and on a parameter (a node fed only by it and its key).
  { op: 'dropout', build: (c) => c.push(c.b.dropout(c.pick(), oneOf(c, [0.1, 0.5]))) },
  {
    op: 'dropout',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.matmul(v, c.b.dropout(c.param([widthOf(v), newWidth(c)]), 0.3, { seed: 1 })));
    },
  },
  {
    // One key read by two dropouts (on other workers, maybe), with different streams.
    op: 'stepKey',
    build: (c) => {
      const key = c.b.apply('stepKey', []);
      const v = c.pick();
      const other = c.pickWidth(widthOf(v));
      c.push(c.b.mul(c.b.dropout(v, 0.5, { key }), c.b.dropout(other, 0.2, { key, seed: 7 })));
    },
  },
  // Masks and images came with their ops after dropout's (merged later): at the very end.
  ...masks,
  ...IMAGE_STEPS,
  unary('geluGrad'),
];
