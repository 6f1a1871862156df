// Graph bytes with a valid checksum are still only as good as whoever wrote them: an attribute no op
// declares, nesting serializeGraph would not write, and msgpack references (a cycle, a value shared)
// are refused on load with typed errors, never a stack overflow.
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { FormatError, GraphError, OpError } from '../../src/errors.ts';
import { Graph, type Node } from '../../src/graph/graph.ts';
import {
  deserializeGraph,
  GRAPH_FORMAT_VERSION,
  GRAPH_MAGIC,
  serializeGraph,
} from '../../src/graph/serialize.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { tensor } from '../../src/tensor/tensor.ts';

/** An op that declares no attributes, as a user's op may: its attributes are not checked by kind. */
const FREE = defineOp({
  name: 'untrustedBytes.free',
  arity: 1,
  saves: { inputs: 'none', output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => x!,
}).name;

const X: Node = { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' };

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

/** The bytes of a graph file around `body` (tagged as Note [graph format] says), checksum included. */
function sealed(body: unknown, packr = new Packr({ useRecords: false })): Uint8Array {
  const parts = [GRAPH_MAGIC, GRAPH_FORMAT_VERSION, body].map((v) => new Uint8Array(packr.pack(v)));
  const end = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(end + 4);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  new DataView(out.buffer).setUint32(end, crc32(out.subarray(0, end)), true);
  return out;
}

/** Little-endian Uint32 values as msgpack binary, as a column of the body. */
const column = (...values: number[]): Uint8Array => new Uint8Array(new Uint32Array(values).buffer);

/**
 * A body (format version 3, Note [graph format]) of the input x and one node of FREE reading it,
 * with `attrs` as encoded (tagged).
 */
function freeBody(attrs: unknown): unknown {
  return {
    size: 2,
    ops: ['input', FREE],
    dtypes: ['float32'],
    shapes: [[2]],
    attrs: [['o'], attrs],
    op: column(0, 1),
    dtype: column(0, 0),
    shape: column(0, 0),
    attr: column(0, 1),
    arity: column(0, 1),
    inputs: column(0),
    names: [[0, 'x']],
    stages: [],
    outputs: [['y', 1]],
  };
}

/** `depth` tagged arrays, one inside the other, around a 0. */
function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = ['a', v];
  return v;
}

describe('attributes no op declares are refused', () => {
  const node = (op: string, attrs: Record<string, unknown>, inputs = [0]): Node => ({
    id: 1,
    op,
    inputs,
    attrs,
    shape: [2],
    dtype: 'float32',
  });
  const cases: [string, Node[], typeof OpError | typeof GraphError, string][] = [
    [
      'relu {junk}',
      [X, node('relu', { junk: 1 })],
      OpError,
      'relu: attribute junk: unknown to the op (it has none)',
    ],
    ['add {axis}', [X, node('add', { axis: 0 }, [0, 0])], OpError, 'add: attribute axis: unknown to the op'],
    [
      'matmul {transA, transB, transC}',
      [X, node('matmul', { transA: false, transB: false, transC: true }, [0, 0])],
      OpError,
      'matmul: attribute transC: unknown to the op (its attributes: transA, transB)',
    ],
    [
      'an input {junk}',
      [{ ...X, attrs: { junk: 1 } }],
      GraphError,
      'an input takes no attributes, found junk',
    ],
    [
      'a param {init, scale}',
      [{ ...X, op: 'param', attrs: { init: { kind: 'zeros' }, scale: 2 } }],
      GraphError,
      'a param takes the attribute init, found scale',
    ],
    [
      'a const {value, note}',
      [{ ...X, op: 'const', attrs: { value: tensor([1, 2]), note: 'x' }, name: undefined } as Node],
      GraphError,
      'a const takes the attribute value, found note',
    ],
  ];
  it.each(cases)('%s', (_, nodes, Class, message) => {
    const err = errorOf(() => deserializeGraph(serializeGraph(new Graph(nodes))));
    expect(err).toBeInstanceOf(Class);
    expect(err.message).toContain(message);
  });

  it('an initializer field its kind does not take, or a constant without its value, is refused', () => {
    const param = (init: unknown): Node[] => [{ ...X, op: 'param', attrs: { init } }];
    for (const [init, message] of [
      [{ kind: 'uniform', low: -1, hihg: 1 }, 'bad attrs.init {hihg: 1, kind: uniform, low: -1}'],
      [{ kind: 'constant' }, 'bad attrs.init {kind: constant}'],
      [{ kind: 'constant', value: Number.NaN }, 'bad attrs.init {kind: constant, value: NaN}'],
      [{ kind: 'heNormal', std: 1 }, 'bad attrs.init {kind: heNormal, std: 1}'],
    ] as const) {
      const err = errorOf(() => deserializeGraph(serializeGraph(new Graph(param(init)))));
      expect(err, message).toBeInstanceOf(GraphError);
      expect(err.message).toContain(message);
    }
  });

  it('attributes an op does declare, and those of an op that declares none, still load', () => {
    const g = deserializeGraph(sealed(freeBody(['o', 'anything', ['a', 1, 'two']])));
    expect(g.nodes[1]!.attrs).toEqual({ anything: [1, 'two'] });
  });
});

describe('nesting and references serializeGraph never writes', () => {
  it('nesting deeper than serializeGraph writes is a FormatError naming where', () => {
    const untagged = (depth: number): unknown => (depth === 0 ? 0 : [untagged(depth - 1)]);
    const save = (depth: number) =>
      serializeGraph(
        new Graph([X, { ...X, id: 1, op: FREE, inputs: [0], attrs: { deep: untagged(depth) } }]),
      );
    expect(() => deserializeGraph(sealed(freeBody(['o', 'deep', nested(31)])))).not.toThrow();
    expect(() => save(31)).not.toThrow();
    expect(() => save(32)).toThrow(/nested too deeply/);
    const err = errorOf(() => deserializeGraph(sealed(freeBody(['o', 'deep', nested(32)]))));
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain('%1 attrs.deep');
    expect(err.message).toContain('nested too deeply (deeper than 32');
  });

  it.each([2_000, 200_000])('nesting %i deep is a FormatError, not a stack overflow', (depth) => {
    // Spliced in by hand where a 0 stands: msgpackr's own packer recurses too.
    const shallow = sealed(freeBody(['o', 'deep', 0]));
    const at = new TextDecoder('latin1').decode(shallow).lastIndexOf('deep') + 4;
    const wrappers = new Uint8Array(depth * 3);
    for (let i = 0; i < depth; i++) wrappers.set([0x92, 0xa1, 0x61], i * 3); // ['a', ...]
    const bytes = reseal(new Uint8Array([...shallow.subarray(0, at), ...wrappers, ...shallow.subarray(at)]));
    expect(errorOf(() => deserializeGraph(bytes))).toBeInstanceOf(FormatError);
  });

  it('a cycle, or one value shared, is a FormatError (the format has no references)', () => {
    const clone = new Packr({ useRecords: false, structuredClone: true });
    const loop: unknown[] = ['a', 1];
    loop.push(loop);
    const cyclic = errorOf(() => deserializeGraph(sealed(freeBody(['o', 'loop', loop]), clone)));
    expect(cyclic).toBeInstanceOf(FormatError);
    // Twenty levels of one pair shared twice: 2^20 leaves from a few hundred bytes.
    let laugh: unknown = ['a', 1, 2];
    for (let i = 0; i < 20; i++) laugh = ['a', laugh, laugh];
    const shared = errorOf(() => deserializeGraph(sealed(freeBody(['o', 'laugh', laugh]), clone)));
    expect(shared).toBeInstanceOf(FormatError);
  });
});

/** Bytes edited, their checksum (the last four bytes) made to match again. */
function reseal(bytes: Uint8Array): Uint8Array {
  const end = bytes.length - 4;
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(end, crc32(bytes.subarray(0, end)), true);
  return bytes;
}
