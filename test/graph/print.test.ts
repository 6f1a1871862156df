import { describe, expect, it } from 'vitest';
import { GraphError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Graph, type Node } from '../../src/graph/graph.ts';
import { printGraph, printNode } from '../../src/graph/print.ts';
import { full, scalar, tensor } from '../../src/tensor/tensor.ts';

function mlp(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 784]);
  const y = b.input('y', ['B']);
  const w1 = b.param('w1', [784, 256]);
  const h = b.name(b.relu(b.matmul(x, w1)), 'h1');
  const logits = b.onStage(1, () => {
    const w2 = b.param('w2', [256, 10], { init: { kind: 'uniform', low: -0.1, high: 0.1 } });
    return b.mul(b.matmul(h, w2, { transB: false }), 0.5);
  });
  b.output('loss', b.softmaxCrossEntropy(logits, y));
  b.output('logits', logits);
  return b.build();
}

const MLP = [
  '%0 = input "x" : f32[B,784]',
  '%1 = input "y" : f32[B]',
  '%2 = param "w1" glorotUniform : f32[784,256]',
  '%3 = matmul %0 %2 : f32[B,256]',
  '%4 "h1" = relu %3 : f32[B,256]',
  '%5 = param "w2" uniform{high: 0.1, low: -0.1} : f32[256,10] @stage 1',
  '%6 = matmul %4 %5 : f32[B,10] @stage 1',
  '%7 = const 0.5 : f32[] @stage 1',
  '%8 = mul %6 %7 : f32[B,10] @stage 1',
  '%9 = softmaxCrossEntropy %8 %1 : f32[]',
  'outputs: loss=%9, logits=%8',
].join('\n');

/** A graph of hand-made nodes (the printer does not validate). */
function graphOf(nodes: Omit<Node, 'id'>[], outputs: Record<string, number> = {}): Graph {
  return new Graph(
    nodes.map((n, id) => ({ id, ...n })),
    outputs,
  );
}

const leaf = { inputs: [], attrs: {}, dtype: 'float32' } as const;

describe('printGraph', () => {
  it('prints one line per node and the outputs', () => {
    expect(printGraph(mlp())).toBe(MLP);
  });

  it('prints attributes with sorted keys, leaving out false flags', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2, 3]);
    b.matmul(x, x, { transB: true });
    b.sum(x, [1], true);
    b.reshape(x, [-1]);
    const g = b.build();
    expect(printNode(g, 1)).toBe('%1 = matmul %0 %0 {transB: true} : f32[2,2]');
    expect(printNode(g, 2)).toBe('%2 = sum %0 {axes: [1], keepdims: true} : f32[2,1]');
    expect(printNode(g, 3)).toBe('%3 = reshape %0 {shape: [-1]} : f32[6]');
    const reordered = graphOf([
      { ...leaf, op: 'input', shape: [2], name: 'x' },
      { op: 'f', inputs: [0], attrs: { b: 1, a: 'two words', c: [1, 'B'] }, shape: [2], dtype: 'float32' },
      { op: 'f', inputs: [0], attrs: { c: [1, 'B'], a: 'two words', b: 1 }, shape: [2], dtype: 'float32' },
    ]);
    expect(printNode(reordered, 1)).toBe('%1 = f %0 {a: "two words", b: 1, c: [1,B]} : f32[2]');
    expect(printNode(reordered, 2).slice(2)).toBe(printNode(reordered, 1).slice(2));
  });

  it('never dumps a tensor or a long array whole', () => {
    const g = graphOf([
      {
        op: 'f',
        inputs: [],
        attrs: {
          table: full([100, 100], 1),
          list: Array.from({ length: 40 }, (_, i) => i),
          deep: { a: { b: { c: { d: { e: 1 } } } } },
        },
        shape: [],
        dtype: 'float64',
      },
    ]);
    expect(printNode(g, 0)).toBe(
      '%0 = f {deep: {a: {b: {c: {...}}}}, list: [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,...+24], table: <f32[100,100]>} : f64[]',
    );
  });

  it('prints small consts inline and large ones by type', () => {
    const b = new GraphBuilder();
    b.const(scalar(0.1));
    b.const(scalar(0.1, 'float64'));
    b.const(
      tensor([
        [1, -0],
        [Number.NaN, Number.NEGATIVE_INFINITY],
      ]),
    );
    b.const(full([10, 10], 3), 'table');
    b.const(tensor([1e-45, 3.4028234663852886e38, 2 ** -126]));
    const lines = printGraph(b.build()).split('\n');
    expect(lines).toEqual([
      '%0 = const 0.1 : f32[]',
      '%1 = const 0.1 : f64[]',
      '%2 = const [[1,-0],[NaN,-Infinity]] : f32[2,2]',
      '%3 "table" = const <f32[10,10]> : f32[10,10]',
      '%4 = const [1e-45,3.4028235e+38,1.1754944e-38] : f32[3]',
      'outputs: none',
    ]);
  });

  it('prints every initializer with its options', () => {
    const b = new GraphBuilder();
    b.param('a', [2], { init: { kind: 'zeros' } });
    b.param('b', [2], { init: { kind: 'constant', value: -0 } });
    b.param('c', [2], { init: { kind: 'normal', mean: 1, std: 0.5 }, dtype: 'float64' });
    expect(printGraph(b.build())).toBe(
      [
        '%0 = param "a" zeros : f32[2]',
        '%1 = param "b" constant{value: -0} : f32[2]',
        '%2 = param "c" normal{mean: 1, std: 0.5} : f64[2]',
        'outputs: none',
      ].join('\n'),
    );
  });

  it('quotes output names that are not plain words', () => {
    const g = graphOf([{ ...leaf, op: 'input', shape: [], name: 'x' }], { 'grad:w1': 0, 'my loss': 0 });
    expect(printGraph(g).split('\n')[1]).toBe('outputs: grad:w1=%0, "my loss"=%0');
  });

  it('shows only the lines around a node, marking it', () => {
    expect(printGraph(mlp(), { around: 5, radius: 1 })).toBe(
      [
        '  ...',
        '  %4 "h1" = relu %3 : f32[B,256]',
        '> %5 = param "w2" uniform{high: 0.1, low: -0.1} : f32[256,10] @stage 1',
        '  %6 = matmul %4 %5 : f32[B,10] @stage 1',
        '  ...',
      ].join('\n'),
    );
    expect(printGraph(mlp(), { around: 0 })).toBe(
      [
        '> %0 = input "x" : f32[B,784]',
        '  %1 = input "y" : f32[B]',
        '  %2 = param "w1" glorotUniform : f32[784,256]',
        '  ...',
      ].join('\n'),
    );
    expect(printGraph(mlp(), { around: 9, radius: 0 })).toBe(
      ['  ...', '> %9 = softmaxCrossEntropy %8 %1 : f32[]'].join('\n'),
    );
  });

  it('rejects a focus that is not a node', () => {
    expect(() => printGraph(mlp(), { around: 10 })).toThrow(GraphError);
    expect(() => printNode(mlp(), -1)).toThrow(GraphError);
  });

  it('prints malformed nodes instead of failing (checkGraph quotes them)', () => {
    const nodes = [
      7,
      { id: 3, op: 'relu', inputs: ['a'], attrs: null, shape: 'B', dtype: 'int8' },
      { id: 2, op: 'param', inputs: [0], attrs: { init: 'he' }, shape: [1], dtype: 'float32', name: 5 },
      { id: 3, op: 'const', inputs: [], attrs: { value: 1 }, shape: [], dtype: 'float32' },
    ];
    const lines = printGraph({ nodes: nodes as never, outputs: [] as never }).split('\n');
    expect(lines).toEqual([
      '%0 = <not a node: 7>',
      '%1 <id 3> = relu <a> <attrs null> : int8<B>',
      '%2 = param <name 5> <init he> <inputs %0> : f32[1]',
      '%3 = const <value 1> : f32[]',
      'outputs: []',
    ]);
  });

  it('prints a cyclic attribute object without recursing forever', () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    const g = graphOf([{ op: 'f', inputs: [], attrs: { loop }, shape: [], dtype: 'float32' }]);
    expect(printNode(g, 0)).toBe('%0 = f {loop: {self: {self: {self: {...}}}}} : f32[]');
  });
});
