import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../src/autodiff/engine.ts';
import { gradGraph } from '../src/autodiff/grad-graph.ts';
import {
  DTypeError,
  FormatError,
  GradientError,
  GraphError,
  InputError,
  OpError,
  ShapeError,
} from '../src/errors.ts';
import { GraphBuilder } from '../src/graph/builder.ts';
import { checkGraph } from '../src/graph/check.ts';
import { Graph } from '../src/graph/graph.ts';
import { deserializeGraph, GRAPH_FORMAT_VERSION, serializeGraph } from '../src/graph/serialize.ts';
import type { DType } from '../src/tensor/tensor.ts';
import { zeros } from '../src/tensor/tensor.ts';
import { thrown } from './support/errors.ts';

// One test per bad input to the core: each checks the error's class, and that its message says what
// was expected, what was found, and where (op, input index, node name, shapes).

/** x: [B,4] -> relu -> y, with a param w: [3,2] feeding a second output. */
function small(): Graph {
  const b = new GraphBuilder();
  b.output('y', b.relu(b.input('x', ['B', 4])));
  b.output('v', b.sum(b.param('w', [3, 2])));
  return b.build();
}

describe('shape errors in ops', () => {
  it('add of [2,3] and [4]', () => {
    const b = new GraphBuilder();
    const err = thrown(ShapeError, () => b.add(b.input('a', [2, 3]), b.input('c', [4])));
    expect(err.message).toMatch(
      /^add: input 1 has shape \[4\], which does not broadcast with input 0 of shape \[2,3\]/,
    );
    expect(err.message).toContain('expected each pair of trailing dimensions to be equal or 1');
    expect(err.context).toMatchObject({ op: 'add', input: 1, found: [4] });
  });

  it('matmul with inner dimensions that differ', () => {
    const b = new GraphBuilder();
    const err = thrown(ShapeError, () => b.matmul(b.input('a', [2, 3]), b.input('c', [4, 5])));
    expect(err.message).toMatch(/^matmul: inner dimensions differ: \[2,3\] x \[4,5\]/);
    expect(err.message).toMatch(/3 in input 0 vs 4 in input 1/);
    expect(err.context).toMatchObject({ op: 'matmul', expected: 3, found: 4 });
  });

  it('the same mismatch in a graph from elsewhere names the node and quotes it', () => {
    const graph = {
      nodes: [
        { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2, 3], dtype: 'float32', name: 'a' },
        { id: 1, op: 'input', inputs: [], attrs: {}, shape: [4], dtype: 'float32', name: 'c' },
        { id: 2, op: 'add', inputs: [0, 1], attrs: {}, shape: [2, 3], dtype: 'float32', name: 'sum' },
      ],
    };
    const err = thrown(ShapeError, () => checkGraph(graph));
    expect(err.message).toMatch(/^%2: add: input 1 has shape \[4\], which does not broadcast with input 0/);
    expect(err.message).toContain('> %2 "sum" = add %0 %1 : f32[2,3]');
    expect(err.context).toMatchObject({ node: 'sum', op: 'add', input: 1, found: [4] });
  });
});

describe('unknown ops', () => {
  it('in the builder', () => {
    const b = new GraphBuilder();
    const err = thrown(OpError, () => b.apply('nope', [b.input('x', [2])]));
    expect(err.message).toMatch(/^unknown op 'nope' \(registered: abs, add, /);
    expect(err.context).toMatchObject({ op: 'nope', expected: 'a registered op', found: 'nope' });
  });

  it('in a deserialized graph', () => {
    const g = new Graph(
      [
        { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' },
        { id: 1, op: 'nope', inputs: [0], attrs: {}, shape: [2], dtype: 'float32', name: 'h' },
      ],
      { h: 1 },
    );
    const err = thrown(OpError, () => deserializeGraph(serializeGraph(g)));
    expect(err.message).toMatch(/^%1: unknown op 'nope'/);
    expect(err.message).toContain('> %1 "h" = nope %0 : f32[2]');
    expect(err.context).toMatchObject({ node: 'h', op: 'nope', found: 'nope' });
  });
});

describe('graph structure', () => {
  const node = (id: number, inputs: number[]) => ({
    id,
    op: 'relu',
    inputs,
    attrs: {},
    shape: [2],
    dtype: 'float32',
  });
  const x = { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' };

  it('a cycle names its nodes in order', () => {
    const err = thrown(GraphError, () => checkGraph({ nodes: [x, node(1, [2]), node(2, [1])] }));
    expect(err.message).toMatch(/^cycle: %1 -> %2 -> %1/);
    expect(err.message).toContain('> %1 = relu %2 : f32[2]');
    expect(err.context).toMatchObject({ node: '%1', expected: 'an acyclic graph', found: [1, 2] });
  });

  it('a dangling reference names the node, the input index and the missing id', () => {
    const err = thrown(GraphError, () => checkGraph({ nodes: [x, node(1, [0]), node(2, [7])] }));
    expect(err.message).toMatch(
      /^%2 \(relu\): input 0 refers to %7, which does not exist \(the graph has 3 nodes\)/,
    );
    expect(err.message).toContain('> %2 = relu %7 : f32[2]');
    expect(err.context).toMatchObject({ node: '%2', op: 'relu', input: 0, found: 7 });
  });
});

describe('gradients', () => {
  it('a non-scalar loss without a seed', () => {
    const b = new GraphBuilder();
    const w = b.param('w', [3]);
    b.output('out', b.name(b.mul(w, 2), 'scaled'));
    const g = b.build();
    const err = thrown(GradientError, () => valueAndGrad(g, { loss: 'out' })({}, { w: zeros([3]) }));
    expect(err.message).toMatch(
      /^loss scaled \(mul\) has shape \[3\]: a non-scalar output needs an explicit seed/,
    );
    expect(err.context).toMatchObject({ node: 'scaled', expected: 'a scalar loss or a seed', found: [3] });
    const symbolic = thrown(GradientError, () => gradGraph(g, { loss: 'out' }));
    expect(symbolic.message).toMatch(/^loss scaled has shape \[3\]: a non-scalar output needs a seed/);
  });
});

describe('feeds and parameters', () => {
  it('a missing feed names the input and the shape it expects', () => {
    const err = thrown(InputError, () => evaluate(small(), {}, {}, ['y']));
    expect(err.message).toBe("feed 'x': missing (expected float32[B,4])");
    expect(err.context).toMatchObject({ node: 'x', expected: ['B', 4], found: 'nothing' });
  });

  it('a mis-shaped feed names the input and both shapes', () => {
    const err = thrown(ShapeError, () => evaluate(small(), { x: zeros([2, 5]) }, {}, ['y']));
    expect(err.message).toBe("feed 'x': expected float32[B,4], found float32[2,5]");
    expect(err.context).toMatchObject({ node: 'x', expected: ['B', 4], found: [2, 5] });
  });

  it('a feed of the wrong dtype is a DTypeError', () => {
    const err = thrown(DTypeError, () => evaluate(small(), { x: zeros([2, 4], 'float64') }, {}, ['y']));
    expect(err.message).toBe("feed 'x': expected float32[B,4], found float64[2,4]");
    expect(err.context).toMatchObject({ node: 'x', expected: 'float32', found: 'float64' });
  });

  it('a parameter value of the wrong dtype is a DTypeError', () => {
    const err = thrown(DTypeError, () => evaluate(small(), {}, { w: zeros([3, 2], 'float64') }, ['v']));
    expect(err.message).toBe("parameter 'w': expected float32[3,2], found float64[3,2]");
    expect(err.context).toMatchObject({ node: 'w', expected: 'float32', found: 'float64' });
  });

  it('a parameter value of the wrong shape names the parameter and both shapes', () => {
    const err = thrown(ShapeError, () => evaluate(small(), {}, { w: zeros([2, 3]) }, ['v']));
    expect(err.message).toBe("parameter 'w': expected float32[3,2], found float32[2,3]");
    expect(err.context).toMatchObject({ node: 'w', expected: [3, 2], found: [2, 3] });
  });

  it('a missing parameter value', () => {
    const err = thrown(InputError, () => evaluate(small(), {}, {}, ['v']));
    expect(err.message).toBe("parameter 'w': missing (expected float32[3,2])");
  });
});

describe('names and dtypes', () => {
  it('duplicate node names', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2]);
    const err = thrown(GraphError, () => b.input('x', [3]));
    expect(err.message).toBe("duplicate node name 'x': already the name of %0 (input[2])");
    expect(err.context).toMatchObject({ node: 'x', expected: 'unique names', found: '%0' });
    const renamed = thrown(GraphError, () => b.name(b.relu(x), 'x'));
    expect(renamed.message).toBe("duplicate node name 'x': already the name of %0 (input[2])");
    expect(renamed.context).toMatchObject({ node: 'x', found: '%0' });
    // A name given up by a rename is free again.
    const y = b.name(b.relu(x), 'y');
    b.name(y, 'z');
    expect(() => b.input('y', [2])).not.toThrow();
  });

  it('duplicate output names', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2]);
    b.output('out', x);
    const err = thrown(GraphError, () => b.output('out', b.relu(x)));
    expect(err.message).toBe("duplicate output name 'out'");
    expect(err.context).toMatchObject({ node: 'out' });
  });

  it("an unsupported dtype ('int32') for an input", () => {
    const b = new GraphBuilder();
    const err = thrown(DTypeError, () => b.input('x', [2], 'int32' as DType));
    expect(err.message).toBe(`input 'x': unsupported dtype "int32" (expected 'float32' or 'float64')`);
    expect(err.context).toMatchObject({ expected: ['float32', 'float64'], found: 'int32' });
  });
});

describe('serialized graphs', () => {
  const bytes = serializeGraph(small());

  it('corrupted bytes', () => {
    const truncated = thrown(FormatError, () => deserializeGraph(bytes.subarray(0, bytes.length - 3)));
    expect(truncated.message).toMatch(
      /^deserializeGraph: the checksum does not match: the bytes are damaged or cut short \(CRC-32 0x[0-9a-f]{8} of the \d+ bytes before the last 4, which say 0x[0-9a-f]{8}\)$/,
    );
    const garbled = bytes.slice();
    garbled[3] = 0x58; // 'backflow-graph' -> 'baXkflow-graph'
    const err = thrown(FormatError, () => deserializeGraph(garbled));
    expect(err.message).toMatch(
      /^deserializeGraph: not a backflow graph: expected the magic string 'backflow-graph'/,
    );
    expect(err.context).toMatchObject({ phase: 'deserialize', expected: 'backflow-graph' });
  });

  it('a newer format', () => {
    const newer = bytes.slice();
    newer[15] = GRAPH_FORMAT_VERSION + 1; // the version, right after the magic string
    const err = thrown(FormatError, () => deserializeGraph(newer));
    const [current, next] = [GRAPH_FORMAT_VERSION, GRAPH_FORMAT_VERSION + 1];
    expect(err.message).toContain(
      `graph format version ${next} is newer than this backflow supports (version ${current})`,
    );
    expect(err.context).toMatchObject({ expected: current, found: next });
  });
});
