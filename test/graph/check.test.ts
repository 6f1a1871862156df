import { describe, expect, it } from 'vitest';
import { type BackflowError, DTypeError, GraphError, OpError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { checkGraph } from '../../src/graph/check.ts';
import { Graph } from '../../src/graph/graph.ts';
import { printGraph } from '../../src/graph/print.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { scalar, Tensor, tensor } from '../../src/tensor/tensor.ts';

type RawNode = Record<string, unknown>;

/**
 * %0 = input "x" : f32[B,4]
 * %1 = param "w" glorotUniform : f32[4,3]
 * %2 = matmul %0 %1 : f32[B,3]
 * %3 "h" = relu %2 : f32[B,3]
 * %4 = const 2 : f32[]
 * %5 = mul %3 %4 : f32[B,3]
 * %6 = sum %5 : f32[]
 * outputs: loss=%6
 */
function sample(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  const w = b.param('w', [4, 3]);
  const h = b.name(b.relu(b.matmul(x, w)), 'h');
  b.output('loss', b.sum(b.mul(h, 2)));
  return b.build();
}

/** The sample as a plain, mutable object, the way a hand-written or decoded graph arrives. */
function raw(graph: Graph = sample()): { nodes: RawNode[]; outputs: Record<string, unknown> } {
  return {
    nodes: graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs], shape: [...n.shape] })),
    outputs: { ...graph.outputs },
  };
}

function errorOf(f: () => unknown): BackflowError {
  try {
    f();
  } catch (err) {
    return err as BackflowError;
  }
  throw new Error('expected an error');
}

describe('checkGraph: valid graphs', () => {
  it('returns a Graph instance built from a plain object, printing as the original', () => {
    const g = sample();
    const checked = checkGraph(raw(g));
    expect(checked).toBeInstanceOf(Graph);
    expect(printGraph(checked)).toBe(printGraph(g));
    expect(checked.node('h').id).toBe(3);
    expect(checked.outputs).toEqual({ loss: 6 });
  });

  it('returns a Graph unchanged, and drops unknown fields of plain nodes', () => {
    const g = sample();
    expect(checkGraph(g)).toBe(g);
    const r = raw(g);
    r.nodes[2]!.comment = 'ignored';
    expect(checkGraph(r).nodes[2]).not.toHaveProperty('comment');
  });

  it('copies the arrays it validated', () => {
    const r = raw();
    const checked = checkGraph(r);
    (r.nodes[2]!.inputs as number[])[0] = 5;
    expect(checked.nodes[2]!.inputs).toEqual([0, 1]);
  });

  it('accepts a missing outputs field as no outputs', () => {
    const checked = checkGraph({ nodes: raw().nodes });
    expect(checked.outputs).toEqual({});
  });
});

describe('checkGraph: structure', () => {
  it.each([
    ['a number', 42],
    ['null', null],
    ['no nodes', { outputs: {} }],
    ['nodes not an array', { nodes: {} }],
  ])('rejects %s', (_, value) => {
    const err = errorOf(() => checkGraph(value));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(/expected \{nodes/);
  });

  it.each<[string, (n: RawNode) => void, RegExp]>([
    ['a wrong id', (n) => (n.id = 7), /%2: bad id \(expected 2, its index in nodes, found 7\)/],
    ['a missing op', (n) => delete n.op, /%2: bad op \(expected an op name, found undefined\)/],
    ['inputs that are not ids', (n) => (n.inputs = [0, 'w']), /%2: bad inputs .*found \[0,w\]/],
    ['missing attrs', (n) => (n.attrs = null), /%2: bad attrs \(expected an object, found null\)/],
    ['a bad dimension', (n) => (n.shape = ['B', -3]), /%2: bad shape .*found \[B,-3\]/],
    ['an empty name', (n) => (n.name = ''), /%2: bad name/],
    ['a negative stage', (n) => (n.stage = -1), /%2: bad stage \(expected an integer >= 0, found -1\)/],
  ])('rejects %s, quoting the node', (_, mutate, pattern) => {
    const r = raw();
    mutate(r.nodes[2]!);
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(pattern);
    expect(err.message).toMatch(/\n {2}> %2/);
    expect(err.context.id).toBe(2);
  });

  it('rejects a node that is not an object and still prints its neighbours', () => {
    const r = raw() as { nodes: unknown[] };
    r.nodes[3] = 'relu';
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toContain('%3 is not a node');
    expect(err.message).toContain('> %3 = <not a node: relu>');
    expect(err.message).toContain('  %2 = matmul %0 %1 : f32[B,3]');
  });

  it('rejects an unsupported dtype with a DTypeError', () => {
    const r = raw();
    r.nodes[0]!.dtype = 'int32';
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(DTypeError);
    expect(err.message).toContain('%0 (input): unsupported dtype int32 (expected float32 or float64)');
    expect(err.message).toContain('> %0 = input "x" : int32[B,4]');
    expect(err.context).toMatchObject({ node: 'x', op: 'input', found: 'int32' });
  });
});

describe('checkGraph: references', () => {
  it('rejects a dangling input, naming node, input index and the missing id', () => {
    const r = raw();
    r.nodes[5]!.inputs = [3, 9];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toContain(
      '%5 (mul): input 1 refers to %9, which does not exist (the graph has 7 nodes)',
    );
    expect(err.message).toContain('> %5 = mul %3 %9 : f32[B,3]');
    expect(err.context).toMatchObject({ node: '%5', op: 'mul', input: 1, found: 9 });
  });

  it('rejects a negative input id', () => {
    const r = raw();
    r.nodes[3]!.inputs = [-1];
    expect(() => checkGraph(r)).toThrow(/input 0 refers to %-1/);
  });

  it('names the nodes of a two-node cycle in order', () => {
    const r = raw();
    // %2 reads %3 and %3 reads %2.
    r.nodes[2]!.inputs = [0, 3];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(/^cycle: %2 -> %3 -> %2/);
    expect(err.context).toMatchObject({ node: '%2', found: [2, 3] });
    expect(err.message).toContain('> %2 = matmul %0 %3 : f32[B,3]');
  });

  it('names a self-loop', () => {
    const r = raw();
    r.nodes[3]!.inputs = [3];
    expect(() => checkGraph(r)).toThrow(/^cycle: %3 -> %3/);
  });

  it('finds a long cycle starting at its smallest id', () => {
    const r = raw();
    r.nodes[2]!.inputs = [5, 1]; // %2 -> %5 -> %3 -> %2
    const err = errorOf(() => checkGraph(r));
    expect(err.message).toMatch(/^cycle: %2 -> %5 -> %3 -> %2/);
  });

  it('calls a forward reference that is not a cycle out of topological order', () => {
    const r = raw();
    r.nodes[2]!.inputs = [0, 4]; // a const comes later: no cycle
    r.nodes[4]!.shape = [4, 3];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(
      /^not in topological order: %2 \(matmul\) input 1 reads %4, which comes after it/,
    );
    expect(err.context).toMatchObject({ input: 1, expected: 'a node id < 2', found: 4 });
  });

  it('checks a deep cycle without overflowing the stack', () => {
    const n = 100_000;
    const nodes: RawNode[] = [
      { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' },
    ];
    for (let id = 1; id < n; id++)
      nodes.push({ id, op: 'relu', inputs: [id - 1], attrs: {}, shape: [2], dtype: 'float32' });
    nodes[1]!.inputs = [n - 1];
    expect(() => checkGraph({ nodes, outputs: {} })).toThrow(/^cycle: %1 -> %99999 -> %99998 -> /);
  });

  it('rejects an output that refers to no node', () => {
    const r = raw();
    r.outputs.loss = 12;
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toContain('output "loss" refers to 12, which is not a node');
    expect(err.message).toContain('outputs: loss=%12');
    expect(err.context).toMatchObject({ node: 'loss', found: 12 });
  });
});

describe('checkGraph: ops', () => {
  it('rejects an unknown op with an OpError naming it', () => {
    const r = raw();
    r.nodes[3]!.op = 'nope';
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(/^%3: unknown op 'nope' \(registered: abs, add, /);
    expect(err.message).toContain('> %3 "h" = nope %2 : f32[B,3]');
    expect(err.context).toMatchObject({ node: 'h', op: 'nope', found: 'nope' });
  });

  it('rejects the wrong number of inputs', () => {
    const r = raw();
    r.nodes[3]!.inputs = [2, 2];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(/^%3: relu: expected 1 inputs, found 2/);
    expect(err.context).toMatchObject({ node: 'h', op: 'relu', expected: '1', found: 2 });
  });

  it('re-runs the shape rule: a declared shape that is not what the op gives', () => {
    const r = raw();
    r.nodes[2]!.shape = ['B', 5];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(
      /^%2 \(matmul\): expected f32\[B,3\] \(the shape rule on inputs f32\[B,4\], f32\[4,3\]\), found f32\[B,5\] declared/,
    );
    expect(err.context).toMatchObject({ node: '%2', op: 'matmul', expected: 'f32[B,3]', found: 'f32[B,5]' });
  });

  it('re-runs the shape rule: a declared dtype that is not what the op gives', () => {
    const r = raw();
    r.nodes[3]!.dtype = 'float64';
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(DTypeError);
    expect(err.context).toMatchObject({ expected: 'f32[B,3]', found: 'f64[B,3]' });
  });

  it('passes on the op shape error with the node it happened at', () => {
    const r = raw();
    r.nodes[1]!.shape = [5, 3]; // matmul [B,4] x [5,3]
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/^%2: matmul: inner dimensions differ: \[B,4\] x \[5,3\]/);
    expect(err.message).toContain('(inputs: f32[B,4], f32[5,3])');
    expect(err.context).toMatchObject({ node: '%2', op: 'matmul', expected: 4, found: 5 });
    expect(err.cause).toBeInstanceOf(ShapeError);
  });

  it('checks attributes against the op before its shape rule: an OpError naming node, op and attribute', () => {
    const r = raw();
    r.nodes[3] = { id: 3, op: 'transpose', inputs: [2], attrs: {}, shape: [3, 'B'], dtype: 'float32' };
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(
      /^%3: transpose: attribute perm: expected an array of integers, found undefined \(inputs: f32\[B,3\]\)/,
    );
    expect(err.context).toMatchObject({ node: '%3', op: 'transpose', attr: 'perm' });
  });

  it('turns a shape rule that crashes on attributes its op does not declare into a GraphError', () => {
    // A user's op that declares no attributes: they are not checked, and its shape rule reads one.
    defineOp({
      name: 'checkTestScale',
      arity: 1,
      saves: { inputs: 'none', output: false },
      infer: ([x], attrs) => ({
        shape: x!.shape.map((d) => (attrs['by'] as number[])[0]! * (d as number)),
        dtype: x!.dtype,
      }),
      forward: ([x]) => x!,
    });
    const r = raw();
    r.nodes[3] = { id: 3, op: 'checkTestScale', inputs: [2], attrs: {}, shape: ['B', 3], dtype: 'float32' };
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(
      /^%3 \(checkTestScale\): the shape rule failed on inputs f32\[B,3\] and attrs \{\}/,
    );
    expect(err.cause).toBeInstanceOf(TypeError);
  });
});

describe('checkGraph: leaves and names', () => {
  it('needs a name on inputs', () => {
    const r = raw();
    delete r.nodes[0]!.name;
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(/^%0: an input needs a name/);
  });

  it('rejects duplicate node names, naming both nodes', () => {
    const r = raw();
    r.nodes[5]!.name = 'h';
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(/^duplicate node name "h": %3 and %5/);
    expect(err.message).toContain('> %5 "h" = mul %3 %4 : f32[B,3]');
    expect(err.context).toMatchObject({ node: 'h', found: [3, 5] });
  });

  it('rejects an input and a param of the same name', () => {
    const r = raw();
    r.nodes[1]!.name = 'x';
    expect(() => checkGraph(r)).toThrow(/duplicate node name "x": %0 and %1/);
  });

  it('needs a param initializer of a known kind', () => {
    const r = raw();
    r.nodes[1]!.attrs = {};
    expect(() => checkGraph(r)).toThrow(/param 'w': bad attrs.init undefined/);
    r.nodes[1]!.attrs = { init: { kind: 'orthogonal' } };
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toMatch(/^param 'w': unknown initializer 'orthogonal'/);
    r.nodes[1]!.attrs = { init: { kind: 'uniform', low: '-1' } };
    expect(() => checkGraph(r)).toThrow(/bad attrs.init/);
  });

  it('needs a concrete param shape', () => {
    const r = raw();
    r.nodes[1]!.shape = [4, 'N'];
    const err = errorOf(() => checkGraph(r));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/^param 'w': expected a concrete shape, found \[4,N\]/);
  });

  it('needs a const value that is a tensor of the declared type', () => {
    const r = raw();
    r.nodes[4]!.attrs = { value: 2 };
    expect(() => checkGraph(r)).toThrow(/%4: a const needs attrs.value, a Tensor/);
    r.nodes[4]!.attrs = { value: tensor([2, 2]) };
    const shape = errorOf(() => checkGraph(r));
    expect(shape).toBeInstanceOf(ShapeError);
    expect(shape.message).toMatch(/^%4: the const value has shape \[2\], the node declares \[\]/);
    r.nodes[4]!.attrs = { value: scalar(2, 'float64') };
    expect(errorOf(() => checkGraph(r))).toBeInstanceOf(DTypeError);
    // A tensor whose storage does not match its dtype cannot even be made.
    expect(() => new Tensor('float32', [], new Float64Array(1))).toThrow(DTypeError);
  });

  it('rejects a leaf with inputs', () => {
    const r = raw();
    r.nodes[4]!.inputs = [0];
    expect(() => checkGraph(r)).toThrow(/%4: a const takes no inputs, found 1/);
  });
});

describe('checkGraph: large graphs', () => {
  // How long it takes is the graph benchmark's (check_ns_per_node, flat from 1e4 to 1e6 nodes).
  it('checks a 100k-node chain (no recursion: no stack overflow)', () => {
    const b = new GraphBuilder();
    let h = b.input('x', ['B', 8]);
    for (let i = 0; i < 100_000; i++) h = b.relu(h);
    b.output('y', h);
    const g = b.build();
    expect(checkGraph(raw(g)).size).toBe(100_001);
  });
});

describe('checkGraph of a graph held as columns (Note [checks on columns])', () => {
  /** The error checkGraph throws for `g`, and for the same nodes as plain objects. */
  function bothErrors(g: Graph): [unknown, unknown] {
    const error = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err;
      }
      return null;
    };
    expect(g.madeAll).toBe(false);
    const columns = error(() => checkGraph(g));
    const copy = new Graph(
      g.nodes.map((n) => ({ ...n })),
      g.outputs,
    );
    return [columns, error(() => checkGraph(copy))];
  }

  it('passes a builder graph without making its node objects', () => {
    const b = new GraphBuilder();
    let h = b.input('x', ['B', 8]);
    for (let i = 0; i < 1000; i++) h = b.tanh(b.add(h, b.param(`p${i}`, [8])));
    b.output('y', b.sum(h));
    const g = b.build();
    expect(checkGraph(g)).toBe(g);
    expect(g.madeAll).toBe(false);
  });

  it('reports what the pass over node objects reports, where the builder let a bad node through', () => {
    // An initializer the builder records as given; attributes changed after the node was recorded.
    const b1 = new GraphBuilder();
    b1.output('w', b1.param('w', [2], { init: { kind: 'uniform', low: 0, hihg: 1 } as never }));
    const b2 = new GraphBuilder();
    const attrs = { shape: [4] };
    b2.output('y', b2.apply('reshape', [b2.input('x', [2, 2])], attrs));
    attrs.shape = [5];
    const b3 = new GraphBuilder();
    const scale = { transA: false, transB: false };
    const x = b3.input('x', [2, 3]);
    b3.output('y', b3.apply('matmul', [x, b3.param('w', [3, 2])], scale));
    (scale as Record<string, unknown>).transC = true;
    for (const [k, g] of [b1.build(), b2.build(), b3.build()].entries()) {
      const [columns, objects] = bothErrors(g);
      expect(columns, `graph ${k}`).toBeInstanceOf(Error);
      expect(columns, `graph ${k}`).toEqual(objects);
      expect((columns as Error).constructor, `graph ${k}`).toBe((objects as Error).constructor);
    }
  });
});
