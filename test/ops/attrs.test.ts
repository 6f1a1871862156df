// Every op with attributes refuses wrong ones with a typed error that names the op: through the
// builder's method, through `apply` with the attributes as a node stores them, and in a graph that
// checkGraph (and so deserializeGraph) checks. A value of the wrong kind is an OpError naming the
// attribute, what was expected and what was found; one of the right kind that does not fit the
// inputs (an axis past the rank, a permutation of the wrong axes) is a ShapeError.
import { describe, expect, it } from 'vitest';
import { BackflowError, fmtFound, OpError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { checkGraph } from '../../src/graph/check.ts';
import { Graph, type Node } from '../../src/graph/graph.ts';
import { deserializeGraph, serializeGraph } from '../../src/graph/serialize.ts';
import { builtinOps } from '../../src/ops/builtins.ts';
import type { Attrs } from '../../src/ops/op.ts';

/**
 * x [2,3], w [3,4], integer indices i [2], and updates u [2,3] for a scatter into [5,3]; an image
 * img [1,4,4,2], a filter k [2,2,2,3], conv2d(img, k)'s cotangent go [1,3,3,3], and a 2x2 pool's
 * pooled [1,2,2,2].
 */
/** x [2,3], w [3,4], integer indices i [2], updates u [2,3] for a scatter into [5,3], a dropout key k [4]. */
interface Leaves {
  x: Node;
  w: Node;
  i: Node;
  u: Node;
  img: Node;
  k: Node;
  go: Node;
  pooled: Node;
  key: Node;
}

interface Case {
  op: string;
  attr: string;
  /** The builder's method, with `v` in the attribute's place. */
  call: (b: GraphBuilder, l: Leaves, v: never) => Node;
  /** A node's inputs and good attributes, as `apply` takes them. */
  stored: (l: Leaves) => { inputs: Node[]; attrs: Attrs };
  /** Values of the wrong kind (OpError), and of the right kind that do not fit (ShapeError). */
  wrongKind: readonly unknown[];
  misfit: readonly unknown[];
}

const AXIS = { wrongKind: [null, 'x', Number.NaN, 1.5, [0], true], misfit: [2, -3] };
const BOOLEAN = { wrongKind: [null, 'yes', 1, Number.NaN, [true]], misfit: [] };
const FINITE = { wrongKind: [null, 'x', Number.NaN, Number.POSITIVE_INFINITY, [1], true], misfit: [] };
const INTEGERS = { wrongKind: [null, 'ab', 5, [0.5, 1], [Number.NaN, 0], [null, 0], [[0], 1]] };
const WORD = { wrongKind: [null, '1', 1.5, -1, 2 ** 32, Number.NaN, [1], true], misfit: [] };
const SHAPE = { wrongKind: [null, 'B', 4, [Number.NaN, 3], [1.5, 3], [-2, 3], [null, 3], ['', 3]] };

const PAIR = { wrongKind: [null, 'x', [1], [1, 2, 3], [0, 1], [1.5, 1], [Number.NaN, 1], true] };
const PADDING = { wrongKind: [null, 'x', [1], [0, 0, 0], [-1, 0], [0.5, 0], true] };
const GROUPS = { wrongKind: [null, '2', Number.NaN, 1.5, 0, -1, [2]] };

type ConvOp = 'conv2d' | 'conv2dInputGrad' | 'conv2dWeightGrad';
/** Each conv op on the leaves with `options` (and its size or kernel), and the attributes as stored. */
const CONV: Record<
  ConvOp,
  { call: (b: GraphBuilder, l: Leaves, o: object) => Node; inputs: (l: Leaves) => Node[] }
> = {
  conv2d: { call: (b, l, o) => b.conv2d(l.img, l.k, o), inputs: (l) => [l.img, l.k] },
  conv2dInputGrad: { call: (b, l, o) => b.conv2dInputGrad(l.go, l.k, [4, 4], o), inputs: (l) => [l.go, l.k] },
  conv2dWeightGrad: {
    call: (b, l, o) => b.conv2dWeightGrad(l.img, l.go, [2, 2], o),
    inputs: (l) => [l.img, l.go],
  },
};
const CONV_STORED = { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 };
const convStored = (op: ConvOp) => ({
  ...CONV_STORED,
  ...(op === 'conv2dInputGrad' ? { size: [4, 4] } : op === 'conv2dWeightGrad' ? { kernel: [2, 2] } : {}),
});

/** The options' attributes of a conv op; `misfit` lists per attribute the values that do not fit the leaves. */
const conv = (op: ConvOp, misfit: Record<'stride' | 'padding' | 'dilation' | 'groups', unknown[]>): Case[] =>
  (['stride', 'padding', 'dilation', 'groups'] as const).map((attr) => ({
    op,
    attr,
    call: (b, l, v) => CONV[op].call(b, l, { [attr]: v }),
    stored: (l) => ({ inputs: CONV[op].inputs(l), attrs: convStored(op) }),
    ...(attr === 'padding' ? PADDING : attr === 'groups' ? GROUPS : PAIR),
    misfit: misfit[attr],
  }));

type PoolOp = 'maxPool2d' | 'maxPool2dGrad' | 'maxPool2dSelect' | 'avgPool2d' | 'avgPool2dGrad';
const POOL: Record<
  PoolOp,
  { call: (b: GraphBuilder, l: Leaves, k: never, o: object) => Node; inputs: (l: Leaves) => Node[] }
> = {
  maxPool2d: { call: (b, l, k, o) => b.maxPool2d(l.img, k, o), inputs: (l) => [l.img] },
  maxPool2dGrad: {
    call: (b, l, k, o) => b.maxPool2dGrad(l.img, l.pooled, k, o),
    inputs: (l) => [l.img, l.pooled],
  },
  maxPool2dSelect: {
    call: (b, l, k, o) => b.maxPool2dSelect(l.img, l.img, k, o),
    inputs: (l) => [l.img, l.img],
  },
  avgPool2d: { call: (b, l, k, o) => b.avgPool2d(l.img, k, o), inputs: (l) => [l.img] },
  avgPool2dGrad: { call: (b, l, k, o) => b.avgPool2dGrad(l.pooled, [4, 4], k, o), inputs: (l) => [l.pooled] },
};

/** A pool's attributes, each alone: 2x2 windows with stride 2 but the attribute tested. */
const pool = (op: PoolOp, misfit: Record<'kernel' | 'stride' | 'padding', unknown[]>): Case[] =>
  (['kernel', 'stride', 'padding'] as const).map((attr) => ({
    op,
    attr,
    call: (b, l, v) => {
      const options = { stride: [2, 2], ...(attr === 'kernel' ? {} : { [attr]: v }) };
      return POOL[op].call(b, l, (attr === 'kernel' ? v : [2, 2]) as never, options);
    },
    stored: (l) => ({
      inputs: POOL[op].inputs(l),
      attrs: {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
        ...(op === 'avgPool2dGrad' ? { size: [4, 4] } : {}),
      },
    }),
    ...(attr === 'padding' ? PADDING : PAIR),
    misfit: misfit[attr],
  }));

const reduce = (op: 'sum' | 'mean' | 'max'): Case[] => [
  {
    op,
    attr: 'axes',
    call: (b, { x }, v) => b[op](x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { axes: [0], keepdims: false } }),
    wrongKind: [null, 'x', Number.NaN, 1.5, [null], [0.5], {}],
    misfit: [2, [0, 2], [-3], [0, 0]],
  },
  {
    op,
    attr: 'keepdims',
    call: (b, { x }, v) => b[op](x, 0, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { axes: [0], keepdims: false } }),
    ...BOOLEAN,
  },
];

const axisOf = (op: 'softmax' | 'logSoftmax'): Case => ({
  op,
  attr: 'axis',
  call: (b, { x }, v) => b[op](x, v),
  stored: ({ x }) => ({ inputs: [x], attrs: { axis: 1 } }),
  ...AXIS,
});

const CASES: Case[] = [
  {
    op: 'pow',
    attr: 'exponent',
    call: (b, { x }, v) => b.pow(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { exponent: 2 } }),
    ...FINITE,
  },
  {
    op: 'leakyRelu',
    attr: 'alpha',
    call: (b, { x }, v) => b.leakyRelu(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { alpha: 0.1 } }),
    ...FINITE,
  },
  ...(['transA', 'transB'] as const).map(
    (attr): Case => ({
      op: 'matmul',
      attr,
      call: (b, { x, w }, v) => b.matmul(x, w, { [attr]: v }),
      stored: ({ x, w }) => ({ inputs: [x, w], attrs: { transA: false, transB: false } }),
      ...BOOLEAN,
    }),
  ),
  {
    op: 'transpose',
    attr: 'perm',
    call: (b, { x }, v) => b.transpose(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { perm: [1, 0] } }),
    ...INTEGERS,
    misfit: [[0, 2], [0, 0], [0], [-1, 0]],
  },
  {
    op: 'reshape',
    attr: 'shape',
    call: (b, { x }, v) => b.reshape(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { shape: [3, 2] } }),
    ...SHAPE,
    misfit: [
      [4, 4],
      [-1, -1],
      ['B', 6],
    ],
  },
  {
    op: 'broadcastTo',
    attr: 'shape',
    call: (b, { x }, v) => b.broadcastTo(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { shape: [4, 2, 3] } }),
    ...SHAPE,
    misfit: [[3, 3], [3], ['B', 3]],
  },
  ...reduce('sum'),
  ...reduce('mean'),
  ...reduce('max'),
  axisOf('softmax'),
  axisOf('logSoftmax'),
  {
    op: 'concat',
    attr: 'axis',
    call: (b, { x }, v) => b.concat([x, x], v),
    stored: ({ x }) => ({ inputs: [x, x], attrs: { axis: 0 } }),
    ...AXIS,
  },
  {
    op: 'slice',
    attr: 'begin',
    call: (b, { x }, v) => b.slice(x, v, [1, 1]),
    stored: ({ x }) => ({ inputs: [x], attrs: { begin: [0, 0], size: [1, 1] } }),
    ...INTEGERS,
    misfit: [[0, 3], [-1, 0], [0]],
  },
  {
    op: 'slice',
    attr: 'size',
    call: (b, { x }, v) => b.slice(x, [0, 0], v),
    stored: ({ x }) => ({ inputs: [x], attrs: { begin: [0, 0], size: [1, 1] } }),
    ...SHAPE,
    misfit: [[3, 1], [1], ['B', 1]],
  },
  ...(['before', 'after'] as const).map(
    (attr): Case => ({
      op: 'pad',
      attr,
      call: (b, { x }, v) => (attr === 'before' ? b.pad(x, v, [0, 0]) : b.pad(x, [0, 0], v)),
      stored: ({ x }) => ({ inputs: [x], attrs: { before: [0, 0], after: [1, 1] } }),
      ...INTEGERS,
      misfit: [[-1, 0], [1]],
    }),
  ),
  {
    op: 'gather',
    attr: 'axis',
    call: (b, { x, i }, v) => b.gather(x, i, v),
    stored: ({ x, i }) => ({ inputs: [x, i], attrs: { axis: 0 } }),
    ...AXIS,
  },
  {
    op: 'scatterAdd',
    attr: 'shape',
    call: (b, { u, i }, v) => b.scatterAdd(u, i, v, 0),
    stored: ({ u, i }) => ({ inputs: [u, i], attrs: { shape: [5, 3], axis: 0 } }),
    ...SHAPE,
    misfit: [[5, 4], []],
  },
  {
    op: 'scatterAdd',
    attr: 'axis',
    call: (b, { u, i }, v) => b.scatterAdd(u, i, [5, 3], v),
    stored: ({ u, i }) => ({ inputs: [u, i], attrs: { shape: [5, 3], axis: 0 } }),
    ...AXIS,
    misfit: [2, -3, 1],
  },
  {
    op: 'oneHot',
    attr: 'depth',
    call: (b, { i }, v) => b.oneHot(i, v),
    stored: ({ i }) => ({ inputs: [i], attrs: { depth: 3, dtype: 'float32' } }),
    wrongKind: [null, '3', Number.NaN, 2.5, 0, -1, [3]],
    misfit: [],
  },
  {
    op: 'oneHot',
    attr: 'dtype',
    call: (b, { i }, v) => b.oneHot(i, 3, v),
    stored: ({ i }) => ({ inputs: [i], attrs: { depth: 3, dtype: 'float32' } }),
    wrongKind: [null, 'int32', 3, ['float32']],
    misfit: [],
  },
  {
    op: 'argmax',
    attr: 'axis',
    call: (b, { x }, v) => b.argmax(x, v),
    stored: ({ x }) => ({ inputs: [x], attrs: { axis: 1 } }),
    ...AXIS,
  },
  // The leaves fit stride 1, padding 0, dilation 1 and 1 group; each misfit changes one of them.
  ...conv('conv2d', { stride: [], padding: [], dilation: [[4, 1]], groups: [2, 3] }),
  ...conv('conv2dInputGrad', { stride: [[2, 2]], padding: [[1, 1]], dilation: [[2, 2]], groups: [2] }),
  ...conv('conv2dWeightGrad', { stride: [[2, 2]], padding: [[1, 1]], dilation: [[2, 2]], groups: [2, 3] }),
  {
    op: 'conv2dInputGrad',
    attr: 'size',
    call: (b, l, v) => b.conv2dInputGrad(l.go, l.k, v),
    stored: (l) => ({ inputs: [l.go, l.k], attrs: convStored('conv2dInputGrad') }),
    ...PAIR,
    misfit: [[5, 5]],
  },
  {
    op: 'conv2dWeightGrad',
    attr: 'kernel',
    call: (b, l, v) => b.conv2dWeightGrad(l.img, l.go, v),
    stored: (l) => ({ inputs: [l.img, l.go], attrs: convStored('conv2dWeightGrad') }),
    ...PAIR,
    misfit: [[3, 3]],
  },
  // Padding must stay below the kernel; the adjoints' other input must fit the window.
  ...pool('maxPool2d', { kernel: [[5, 5]], stride: [], padding: [[2, 2]] }),
  ...pool('maxPool2dGrad', {
    kernel: [[3, 3]],
    stride: [[1, 1]],
    padding: [
      [1, 1],
      [2, 2],
    ],
  }),
  ...pool('maxPool2dSelect', { kernel: [[5, 5]], stride: [], padding: [[2, 2]] }),
  ...pool('avgPool2d', { kernel: [[5, 5]], stride: [], padding: [[2, 2]] }),
  ...pool('avgPool2dGrad', {
    kernel: [[3, 3]],
    stride: [[1, 1]],
    padding: [
      [1, 1],
      [2, 2],
    ],
  }),
  {
    op: 'avgPool2dGrad',
    attr: 'size',
    call: (b, l, v) => b.avgPool2dGrad(l.pooled, v, 2),
    stored: (l) => ({
      inputs: [l.pooled],
      attrs: { kernel: [2, 2], stride: [2, 2], padding: [0, 0], size: [4, 4] },
    }),
    ...PAIR,
    misfit: [[6, 6]],
  },
  {
    op: 'dropout',
    attr: 'rate',
    call: (b, { x }, v) => b.dropout(x, v),
    stored: ({ x, key }) => ({ inputs: [x, key], attrs: { rate: 0.5, seed: 0, stream: 0 } }),
    wrongKind: [null, 'x', Number.NaN, 1, -0.1, 1.5, [0.5], true],
    misfit: [],
  },
  ...(['seed', 'stream'] as const).map(
    (attr): Case => ({
      op: 'dropout',
      attr,
      call: (b, { x }, v) => b.dropout(x, 0.5, { [attr]: v }),
      stored: ({ x, key }) => ({ inputs: [x, key], attrs: { rate: 0.5, seed: 0, stream: 0 } }),
      ...WORD,
    }),
  ),
  {
    op: 'dimSize',
    attr: 'dims',
    // No builder method: VJPs make it (Ops.count) with the dimensions of a mean.
    call: (b, _, v) => b.apply('dimSize', [], { dims: v, dtype: 'float32' }),
    stored: () => ({ inputs: [], attrs: { dims: ['B', 3], dtype: 'float32' } }),
    ...SHAPE,
    misfit: [],
  },
  {
    op: 'dimSize',
    attr: 'dtype',
    call: (b, _, v) => b.apply('dimSize', [], { dims: [3], dtype: v }),
    stored: () => ({ inputs: [], attrs: { dims: ['B', 3], dtype: 'float32' } }),
    wrongKind: [null, 'int8', 3],
    misfit: [],
  },
];

function builder(): { b: GraphBuilder; leaves: Leaves } {
  const b = new GraphBuilder();
  const leaves = {
    x: b.input('x', [2, 3]),
    w: b.input('w', [3, 4]),
    i: b.input('i', [2]),
    u: b.input('u', [2, 3]),
    img: b.input('img', [1, 4, 4, 2]),
    k: b.input('k', [2, 2, 2, 3]),
    go: b.input('go', [1, 3, 3, 3]),
    pooled: b.input('pooled', [1, 2, 2, 2]),
    key: b.input('key', [4], 'float64'),
  };
  return { b, leaves };
}

/** The error `f` throws: a BackflowError (a TypeError or RangeError fails here) whose message starts with the op. */
function refusal(op: string, f: () => unknown): BackflowError {
  let err: unknown = null;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'a typed error').toBeInstanceOf(BackflowError);
  expect((err as Error).message).toMatch(new RegExp(`^(%\\d+: )?${op}: `));
  return err as BackflowError;
}

// Values named as the messages show them (JSON would show NaN and the infinities as null).
const wrongKind = CASES.flatMap((c) =>
  c.wrongKind.map((v) => [`${c.op} ${c.attr}`, fmtFound(v), c, v] as const),
);
const misfit = CASES.flatMap((c) => c.misfit.map((v) => [`${c.op} ${c.attr}`, fmtFound(v), c, v] as const));

describe('op attributes', () => {
  it('the table covers every built-in op that declares attributes, each of its attributes', () => {
    const declared = builtinOps.flatMap((def) => Object.keys(def.attrs ?? {}).map((a) => `${def.name} ${a}`));
    const tested = [...new Set(CASES.map((c) => `${c.op} ${c.attr}`))];
    expect(tested.sort()).toEqual(declared.sort());
  });

  it('the good attributes of each case make a node (the refusals below are of the value alone)', () => {
    for (const c of CASES) {
      const { b, leaves } = builder();
      const { inputs, attrs } = c.stored(leaves);
      expect(() => b.apply(c.op, inputs, attrs), `${c.op} ${c.attr}`).not.toThrow();
    }
  });

  it.each(wrongKind)(
    '%s = %s (wrong kind): an OpError naming op, attribute, expected and found',
    (_, shown, c, v) => {
      const { b, leaves } = builder();
      const err = refusal(c.op, () => c.call(b, leaves, v as never));
      expect(err).toBeInstanceOf(OpError);
      expect(err.message).toMatch(new RegExp(`^${c.op}: attribute ${c.attr}: expected .+, found `));
      expect(err.message).toContain(`found ${shown}`);
      expect(err.context).toMatchObject({ op: c.op, attr: c.attr });
      // As stored in a node: `apply` with the attribute itself.
      const { inputs, attrs } = c.stored(leaves);
      const stored = refusal(c.op, () => b.apply(c.op, inputs, { ...attrs, [c.attr]: v }));
      expect(stored).toBeInstanceOf(OpError);
      expect(stored.message).toMatch(new RegExp(`^${c.op}: attribute ${c.attr}: expected `));
    },
  );

  it.each(misfit)('%s = %s (does not fit the inputs): a ShapeError naming the op', (_, _shown, c, v) => {
    const { b, leaves } = builder();
    expect(refusal(c.op, () => c.call(b, leaves, v as never))).toBeInstanceOf(ShapeError);
  });

  it('an attribute an op does not have is refused, naming the ones it has', () => {
    const { b, leaves } = builder();
    const err = refusal('sum', () => b.apply('sum', [leaves.x], { axis: 0, keepdims: false }));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(/^sum: attribute axes: expected an array of integers, found undefined/);
    const extra = refusal('sum', () => b.apply('sum', [leaves.x], { axes: [0], keepdims: false, axis: 0 }));
    expect(extra.message).toMatch(
      /^sum: attribute axis: unknown to the op \(its attributes: axes, keepdims\)/,
    );
  });

  it('a stored axis is already normalized: negative, repeated or unsorted axes are refused', () => {
    const { b, leaves } = builder();
    for (const axes of [[-1], [1, 0], [0, 0]])
      expect(refusal('sum', () => b.apply('sum', [leaves.x], { axes, keepdims: false }))).toBeInstanceOf(
        ShapeError,
      );
    expect(refusal('softmax', () => b.apply('softmax', [leaves.x], { axis: -1 }))).toBeInstanceOf(ShapeError);
  });
});

describe('op attributes in a graph from elsewhere', () => {
  /** A graph of one node of the case's op with its good attributes, then `v` in the attribute's place. */
  function tampered(c: Case, v: unknown): Graph {
    const { b, leaves } = builder();
    const { inputs, attrs } = c.stored(leaves);
    b.output('y', b.apply(c.op, inputs, attrs));
    const graph = b.build();
    const nodes = graph.nodes.map((n) => (n.op === c.op ? { ...n, attrs: { ...n.attrs, [c.attr]: v } } : n));
    return new Graph(nodes, graph.outputs);
  }

  it.each(wrongKind)('%s = %s: checkGraph raises the OpError at the node', (_, _shown, c, v) => {
    const err = refusal(c.op, () => checkGraph(tampered(c, v)));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(new RegExp(`^%\\d+: ${c.op}: attribute ${c.attr}: expected `));
  });

  it('deserializeGraph raises it too', () => {
    for (const c of CASES) {
      const bytes = serializeGraph(tampered(c, 'bad'));
      const err = refusal(c.op, () => deserializeGraph(bytes));
      expect(err, `${c.op} ${c.attr}`).toBeInstanceOf(OpError);
    }
  });
});
