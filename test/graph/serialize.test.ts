import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import { BackflowError, DTypeError, FormatError, GraphError, OpError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Graph, type Node } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { printGraph } from '../../src/graph/print.ts';
import {
  deserializeGraph,
  GRAPH_FORMAT_VERSION,
  GRAPH_MAGIC,
  serializeGraph,
} from '../../src/graph/serialize.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { scalar, Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';
import { everyFieldGraph } from '../support/models.ts';

/** A tensor whose storage is exactly these bit patterns. */
function fromBits(dtype: 'float32' | 'float64', words: readonly number[]): Tensor {
  if (dtype === 'float32') {
    const data = new Float32Array(words.length);
    new Uint32Array(data.buffer).set(words);
    return new Tensor(dtype, [words.length], data);
  }
  const data = new Float64Array(words.length / 2);
  new Uint32Array(data.buffer).set(words); // little-endian word pairs: [low, high]
  return new Tensor(dtype, [words.length / 2], data);
}

const SPECIAL_F32 = [
  0x7fc00000, // quiet NaN
  0x7fc00001, // quiet NaN with a payload
  0xffc12345, // negative NaN with a payload
  0x7f800001, // signalling NaN
  0x80000000, // -0
  0x00000001, // smallest denormal
  0x807fffff, // largest negative denormal
  0x7f800000, // Infinity
  0xff800000, // -Infinity
  0x7f7fffff, // largest finite
  0x3dcccccd, // 0.1
];
const SPECIAL_F64 = [
  0x00000000, 0x7ff80000, 0x00000001, 0x7ff80000, 0xdeadbeef, 0xfff4cafe, 0x00000000, 0x80000000, 0x00000001,
  0x00000000, 0xffffffff, 0x800fffff, 0x00000000, 0x7ff00000, 0x00000000, 0xfff00000, 0x9999999a, 0x3fb99999,
];

function constGraph(values: Tensor[]): Graph {
  const b = new GraphBuilder();
  for (const [i, v] of values.entries()) b.output(`c${i}`, b.const(v, `c${i}`));
  return b.build();
}

/** The graph `everyFieldGraph()` was, written by the serializer of format version 1 (no checksum). */
const V1 = new Uint8Array(readFileSync(new URL('./fixtures/every-field-v1.bin', import.meta.url)));
/** The same graph written by the serializer of format version 2 (a msgpack map a node, a checksum). */
const V2 = new Uint8Array(readFileSync(new URL('./fixtures/every-field-v2.bin', import.meta.url)));
const V1_PRINTED = readFileSync(new URL('./fixtures/every-field-v1.txt', import.meta.url), 'utf8').trimEnd();

/** Bytes edited in place, their checksum (the last four bytes, Note [graph format]) made to match again. */
function reseal(bytes: Uint8Array): Uint8Array {
  const end = bytes.length - 4;
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(end, crc32(bytes.subarray(0, end)), true);
  return bytes;
}

/** An op that declares no attributes, as a user's op may: its attributes are whatever a node holds. */
const FREE = defineOp({
  name: 'serializeTest.free',
  arity: 1,
  saves: { inputs: 'none', output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => x!,
}).name;

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('serializeGraph / deserializeGraph round trip', () => {
  it('is exact: printed form, outputs, stages, symbolic dims, initializers', () => {
    const g = everyFieldGraph();
    const back = deserializeGraph(serializeGraph(g));
    expect(back).toBeInstanceOf(Graph);
    expect(printGraph(back)).toBe(printGraph(g));
    expect(back.outputs).toEqual(g.outputs);
    expect(Object.keys(back.outputs)).toEqual(['loss', 'grad:w1', 'grad:w2']);
    expect(back.node('x').shape).toEqual(['B', 6]);
    expect(back.node('w2').stage).toBe(1);
    expect(back.node('w2').attrs.init).toEqual({ kind: 'uniform', low: -0.5, high: 0.5 });
    expect(back.nodes.map((n) => n.attrs)).toEqual(g.nodes.map((n) => n.attrs));
    expect(back.nodes.map((n) => [n.name, n.stage])).toEqual(g.nodes.map((n) => [n.name, n.stage]));
  });

  it('evaluates to bitwise the same outputs', () => {
    const g = everyFieldGraph();
    const back = deserializeGraph(serializeGraph(g));
    const params = initParams(g, 7);
    const rng = new Rng(1);
    const feeds = { x: rng.normalTensor([4, 6]), y: tensor([0, 2, 1, 2]) };
    const a = evaluate(g, feeds, params);
    const b = evaluate(back, feeds, params);
    for (const name of Object.keys(g.outputs)) expectBitwise(a[name]!, b[name]!);
  });

  it('keeps every bit of const tensors: NaN payloads, -0, denormals, infinities', () => {
    const values = [
      fromBits('float32', SPECIAL_F32),
      fromBits('float64', SPECIAL_F64),
      scalar(-0),
      tensor(new Float32Array(0), { shape: [0, 3] }),
      new Rng(3).normalTensor([7, 5], 0, 1, 'float64'),
    ];
    const back = deserializeGraph(serializeGraph(constGraph(values)));
    values.forEach((v, i) => {
      const t = back.node(`c${i}`).attrs.value as Tensor;
      expectBitwise(t, v);
      // Owned, aligned storage of the right type (Note [owned storage]).
      expect(t.data).toBeInstanceOf(v.dtype === 'float32' ? Float32Array : Float64Array);
      expect(t.data.byteOffset).toBe(0);
      expect(t.data.buffer.byteLength).toBe(t.data.byteLength);
      expect(t.data.buffer).not.toBe(v.data.buffer);
    });
  });

  it('keeps attribute values msgpack alone would lose: -0, NaN, undefined, key order, __proto__', () => {
    const attrs = JSON.parse('{"z": -1, "__proto__": {"k": [1, "B"]}, "a": null}') as Record<string, unknown>;
    Object.assign(attrs, { negZero: -0, nan: Number.NaN, inf: [Number.NEGATIVE_INFINITY], gone: undefined });
    attrs.nested = { list: [-0, true, 'x', [[]]], empty: {} };
    const g = new Graph([
      { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' },
      { id: 1, op: FREE, inputs: [0], attrs, shape: [2], dtype: 'float32' },
    ]);
    const back = deserializeGraph(serializeGraph(g)).nodes[1]!.attrs;
    expect(Object.keys(back)).toEqual(Object.keys(attrs));
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.hasOwn(back, '__proto__')).toBe(true);
    expect(back).toStrictEqual(attrs);
    expect(Object.is(back.negZero, -0)).toBe(true);
    expect(Object.is((back.nested as { list: unknown[] }).list[0], -0)).toBe(true);
    expect(Object.hasOwn(back, 'gone')).toBe(true);
  });

  it('returns owned bytes that start with the header', () => {
    const bytes = serializeGraph(everyFieldGraph());
    expect(bytes.constructor).toBe(Uint8Array);
    expect(bytes.byteOffset).toBe(0);
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength);
    // msgpack: a fixstr of 14 bytes, the magic, then the version as a positive fixint.
    expect(bytes[0]).toBe(0xa0 | GRAPH_MAGIC.length);
    expect(new TextDecoder().decode(bytes.subarray(1, 15))).toBe(GRAPH_MAGIC);
    expect(bytes[15]).toBe(GRAPH_FORMAT_VERSION);
  });

  // How long it takes is the graph benchmark's (serialize_roundtrip_ms).
  it('round-trips a graph of 100k nodes', () => {
    const b = new GraphBuilder();
    let h = b.input('x', ['B', 8]);
    for (let i = 0; i < 100_000; i++) h = b.relu(h);
    b.output('y', h);
    const g = b.build();
    const back = deserializeGraph(serializeGraph(g));
    expect(back.size).toBe(100_001);
  });

  it('refuses attributes that are not plain data', () => {
    const g = new Graph([
      {
        id: 0,
        op: 'input',
        inputs: [],
        attrs: { when: new Date(0) },
        shape: [],
        dtype: 'float32',
        name: 'x',
      },
    ]);
    const err = errorOf(() => serializeGraph(g)) as FormatError;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain('%0 attrs.when is a Date');
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    const cyclic = new Graph([
      { id: 0, op: 'input', inputs: [], attrs: { loop }, shape: [], dtype: 'float32', name: 'x' },
    ]);
    expect(() => serializeGraph(cyclic)).toThrow(/nested too deeply/);
  });
});

describe('deserializeGraph: bad bytes', () => {
  const good = serializeGraph(everyFieldGraph());

  it('rejects a wrong magic string', () => {
    const bytes = good.slice();
    bytes[1] = 'B'.charCodeAt(0);
    const err = errorOf(() => deserializeGraph(bytes)) as FormatError;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain(
      `not a backflow graph: expected the magic string 'backflow-graph', found "Backflow-graph"`,
    );
  });

  it('rejects a newer format version, saying which it found and which it supports', () => {
    const [current, newer] = [GRAPH_FORMAT_VERSION, GRAPH_FORMAT_VERSION + 1];
    const bytes = good.slice();
    bytes[15] = newer;
    const err = errorOf(() => deserializeGraph(bytes)) as FormatError;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain(
      `graph format version ${newer} is newer than this backflow supports (version ${current})`,
    );
    expect(err.context).toMatchObject({ expected: current, found: newer });
    // The body of a newer version is never decoded: here it is not even msgpack.
    const header = good.subarray(0, 16).slice();
    header[15] = newer;
    const future = new Uint8Array([...header, 0xc1, 0xc1]);
    expect(() => deserializeGraph(future)).toThrow(`version ${newer} is newer`);
  });

  it('rejects version 0', () => {
    const bytes = good.slice();
    bytes[15] = 0;
    expect(() => deserializeGraph(bytes)).toThrow(
      `bad graph format version: expected an integer in [1, ${GRAPH_FORMAT_VERSION}], found 0`,
    );
  });

  it('rejects bytes truncated at every offset with a FormatError', () => {
    for (let end = 0; end < good.length; end++) {
      const err = errorOf(() => deserializeGraph(good.subarray(0, end)));
      if (!(err instanceof FormatError)) throw new Error(`truncated at ${end}: ${String(err)}`);
    }
    expect(() => deserializeGraph(good.subarray(0, 200))).toThrow(
      /^deserializeGraph: the checksum does not match: the bytes are damaged or cut short/,
    );
    expect(() => deserializeGraph(good.subarray(0, 18))).toThrow(
      /truncated graph: 18 bytes end before its checksum/,
    );
    // Version 1 has no checksum: msgpack finds the body cut short.
    expect(() => deserializeGraph(V1.subarray(0, 200))).toThrow(
      /^deserializeGraph: truncated graph: 200 bytes/,
    );
  });

  it('rejects trailing garbage', () => {
    for (const tail of [[0], [0xc1], [0x92, 1]]) {
      // After the checksum, they are not the checksum; before it, and sealed, they are trailing bytes.
      expect(() => deserializeGraph(new Uint8Array([...good, ...tail]))).toThrow(/checksum does not match/);
      const sealed = reseal(new Uint8Array([...good.subarray(0, -4), ...tail, 0, 0, 0, 0]));
      for (const bytes of [sealed, new Uint8Array([...V1, ...tail])]) {
        const err = errorOf(() => deserializeGraph(bytes)) as FormatError;
        expect(err).toBeInstanceOf(FormatError);
        expect(err.message).toContain(`trailing bytes: ${tail.length} bytes after the end of the graph`);
      }
    }
  });

  it('rejects 2,000 random byte strings with a FormatError or a GraphError', () => {
    const rng = new Rng(42);
    for (let i = 0; i < 2000; i++) {
      const bytes = new Uint8Array(rng.int(300));
      for (let k = 0; k < bytes.length; k++) bytes[k] = rng.int(256);
      // Half of them start with a valid header and end with their checksum, so the body decoder is
      // fuzzed too.
      if (i % 2 === 1 && bytes.length > 20) {
        bytes.set(good.subarray(0, 16));
        reseal(bytes);
      }
      const err = errorOf(() => deserializeGraph(bytes));
      if (!(err instanceof FormatError || err instanceof GraphError))
        throw new Error(`case ${i}: ${String(err)}`);
    }
  });

  it('rejects corrupted bytes with a typed error (or decodes a graph that passes the checker)', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 1000; i++) {
      const bytes = good.slice();
      for (let k = 0; k < 1 + (i % 3); k++) bytes[rng.int(bytes.length - 4)] = rng.int(256);
      reseal(bytes);
      try {
        expect(deserializeGraph(bytes)).toBeInstanceOf(Graph);
      } catch (err) {
        if (!(err instanceof BackflowError)) throw new Error(`case ${i}: ${String(err)}`);
      }
    }
  });

  it('rejects what is not a Uint8Array', () => {
    expect(() => deserializeGraph([1, 2] as never)).toThrow(FormatError);
  });

  it('runs checkGraph on what it decoded: an unknown op is an OpError', () => {
    const g = new Graph(
      [
        { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: 'x' },
        { id: 1, op: 'nope', inputs: [0], attrs: {}, shape: [2], dtype: 'float32' },
      ],
      { y: 1 },
    );
    const err = errorOf(() => deserializeGraph(serializeGraph(g))) as OpError;
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toContain("unknown op 'nope'");
    expect(err.message).toContain('> %1 = nope %0 : f32[2]');
  });

  it('rejects a decoded tensor whose bytes do not fit its shape', () => {
    const bytes = serializeGraph(constGraph([tensor([1, 2, 3])]));
    // The shape [3] is encoded as [0x91, 0x03] just before the 12 bytes of data.
    const at = bytes.findIndex((_, i) => bytes[i] === 0x91 && bytes[i + 1] === 3 && bytes[i + 2] === 0xc4);
    bytes[at + 1] = 4;
    reseal(bytes);
    expect(() => deserializeGraph(bytes)).toThrow(/a float32\[4\] tensor needs 16 bytes, found 12/);
  });

  it('rejects duplicate output names', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2]);
    b.output('outA', x);
    b.output('outB', b.relu(x));
    const bytes = serializeGraph(b.build());
    const text = new TextDecoder('latin1').decode(bytes);
    bytes[text.indexOf('outB') + 3] = 'A'.charCodeAt(0);
    reseal(bytes);
    const err = errorOf(() => deserializeGraph(bytes)) as GraphError;
    expect(err).toBeInstanceOf(GraphError);
    expect(err.message).toContain("duplicate output name 'outA' (%0 and %1)");
  });

  it('rejects an unsupported dtype in the bytes with a DTypeError', () => {
    const b = new GraphBuilder();
    b.output('x', b.input('x', [2], 'float64'));
    const bytes = serializeGraph(b.build());
    const text = new TextDecoder('latin1').decode(bytes);
    bytes.set(new TextEncoder().encode('16'), text.indexOf('float64') + 5);
    reseal(bytes);
    expect(() => deserializeGraph(bytes)).toThrow(DTypeError);
    expect(() => deserializeGraph(bytes)).toThrow(/unsupported dtype float16/);
  });
});

describe('the checksum (from format version 2), and versions 1 and 2', () => {
  it('every single-bit flip of a serialized graph is refused with a FormatError', () => {
    const good = serializeGraph(everyFieldGraph());
    let refused = 0;
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bytes = good.slice();
      bytes[bit >> 3]! ^= 1 << (bit & 7);
      const err = errorOf(() => deserializeGraph(bytes));
      if (!(err instanceof FormatError)) throw new Error(`bit ${bit}: ${String(err)}`);
      refused++;
    }
    expect(refused).toBe(good.length * 8);
  });

  it('a version 1 file, without a checksum, still loads as the graph it was', () => {
    expect(V1[15]).toBe(1);
    const g = deserializeGraph(V1);
    expect(printGraph(g)).toBe(V1_PRINTED);
    expect(printGraph(g)).toBe(printGraph(everyFieldGraph()));
    // Written again, it is the current version, and reads back the same.
    const again = serializeGraph(g);
    expect(again[15]).toBe(GRAPH_FORMAT_VERSION);
    expect(printGraph(deserializeGraph(again))).toBe(V1_PRINTED);
    // Versions 1 and 2 differ in the version and the checksum only.
    expect(V2[15]).toBe(2);
    expect(Buffer.compare(V2.subarray(16, -4), V1.subarray(16))).toBe(0);
  });

  it('a version 2 file, a msgpack map a node, still loads as the graph it was', () => {
    const g = deserializeGraph(V2);
    expect(printGraph(g)).toBe(V1_PRINTED);
    expect(g.nodes.map((n) => n.attrs)).toEqual(everyFieldGraph().nodes.map((n) => n.attrs));
    expect(Buffer.compare(serializeGraph(g), serializeGraph(everyFieldGraph()))).toBe(0);
    // Its checksum is checked as the current version's is.
    const bytes = V2.slice();
    bytes[100]! ^= 1;
    expect(() => deserializeGraph(bytes)).toThrow(/the checksum does not match/);
  });
});

describe('format version 3: the nodes as columns', () => {
  /** The body of `graph`'s bytes, edited by `edit`, sealed again with the current version. */
  function edited(graph: Graph, edit: (body: Record<string, unknown>) => void): Uint8Array {
    const packr = new Packr({ useRecords: false });
    const bytes = serializeGraph(graph);
    const values = packr.unpackMultiple(bytes.subarray(0, -4)) as unknown[];
    const body = values[2] as Record<string, unknown>;
    edit(body);
    const parts = [GRAPH_MAGIC, GRAPH_FORMAT_VERSION, body].map((v) => new Uint8Array(packr.pack(v)));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0) + 4);
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return reseal(out);
  }
  const column = (...values: number[]) => new Uint8Array(new Uint32Array(values).buffer);
  const g = everyFieldGraph();

  it('writes each distinct op, dtype and shape once, and each attribute object', () => {
    const b = new GraphBuilder();
    let h = b.input('x', ['B', 8]);
    for (let i = 0; i < 1000; i++)
      h = b.tanh(b.add(h, b.const(new Tensor('float32', [8], new Float32Array(8)))));
    b.output('y', h);
    const packr = new Packr({ useRecords: false });
    const values = packr.unpackMultiple(serializeGraph(b.build()).subarray(0, -4)) as unknown[];
    const body = values[2] as Record<string, unknown[]>;
    expect(body.ops).toEqual(['input', 'const', 'add', 'tanh']);
    expect(body.dtypes).toEqual(['float32']);
    expect(body.shapes).toEqual([['B', 8], [8]]);
    // The empty attributes of every node but the constants, and each constant's own.
    expect(body.attrs).toHaveLength(1 + 1000);
    expect(body.attrs![0]).toEqual(['o']);
  });

  it('reads back the bytes it wrote, and writes them again the same', () => {
    const bytes = serializeGraph(g);
    expect(Buffer.compare(serializeGraph(deserializeGraph(bytes)), bytes)).toBe(0);
  });

  it('reads a graph on its columns, checked without making its node objects', () => {
    const back = deserializeGraph(serializeGraph(g));
    expect(back.madeAll).toBe(false);
    expect(back.node('w2').stage).toBe(1);
    expect(printGraph(back)).toBe(printGraph(g));
    expect(back.madeAll).toBe(true);
  });

  it('refuses an index outside its table, naming the node', () => {
    const n = g.size;
    const bad = edited(g, (body) => {
      const op = new Uint32Array(n);
      op[7] = 99;
      body.op = new Uint8Array(op.buffer);
    });
    const err = errorOf(() => deserializeGraph(bad)) as FormatError;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toContain('%7: op 99 is not an entry of the table of');
  });

  it('refuses a column of the wrong length, saying what it expected', () => {
    const n = g.size;
    for (const key of ['op', 'dtype', 'shape', 'attr', 'arity', 'inputs']) {
      const err = errorOf(() =>
        deserializeGraph(edited(g, (body) => (body[key] = column(0)))),
      ) as FormatError;
      expect(err, key).toBeInstanceOf(FormatError);
      expect(err.message, key).toMatch(new RegExp(`${key}: expected \\d+ values of 4 bytes`));
    }
    const short = errorOf(() =>
      deserializeGraph(edited(g, (body) => (body.arity = column(...new Array(n).fill(0))))),
    );
    expect((short as FormatError).message).toMatch(
      /inputs: expected 0 values of 4 bytes \(0 bytes\), found \d+ bytes/,
    );
  });

  it('refuses a body with a key missing or one it does not know, names and stages of no node', () => {
    const cases: [(body: Record<string, unknown>) => void, RegExp][] = [
      [(body) => delete body.stages, /bad graph body: expected \{size, ops/],
      [(body) => (body.extra = 1), /bad graph body/],
      [(body) => (body.size = -1), /size: expected a node count, found -1/],
      [(body) => (body.names = [[999, 'x']]), /names: expected \[id, value\] pairs/],
      [
        (body) =>
          (body.stages = [
            [5, 1],
            [5, 1],
          ]),
        /stages: expected \[id, value\] pairs/,
      ],
      [(body) => (body.shapes = 'no'), /shapes: expected an array, found no/],
    ];
    for (const [edit, message] of cases) {
      const err = errorOf(() => deserializeGraph(edited(g, edit)));
      expect(err, String(message)).toBeInstanceOf(FormatError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('checks what the tables hold as it checks any graph: a name that is a node of another kind is refused', () => {
    const err = errorOf(() =>
      deserializeGraph(
        edited(g, (body) => {
          (body.names as unknown[]).push([3, 'x']);
        }),
      ),
    );
    expect(err).toBeInstanceOf(GraphError);
    expect((err as Error).message).toContain('duplicate node name "x"');
  });
});

describe('graph nodes in the wire format', () => {
  it('are checked like hand-written nodes (a bad name is a GraphError)', () => {
    const nodes: Node[] = [
      { id: 0, op: 'input', inputs: [], attrs: {}, shape: [2], dtype: 'float32', name: '' },
    ];
    const err = errorOf(() => deserializeGraph(serializeGraph(new Graph(nodes))));
    expect(err).toBeInstanceOf(GraphError);
  });
});
