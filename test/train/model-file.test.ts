// Model files (Note [model file format] in src/train/model-file.ts): a graph and its parameters
// saved and loaded in one call; every damaged, truncated, newer or forged file refused with a typed
// error; names kept off prototypes. And predict and summary on what was loaded.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { evaluate } from '../../src/autodiff/engine.ts';
import {
  InputError,
  ModelCorruptError,
  ModelFileError,
  ModelVersionError,
  OpError,
  ShapeError,
} from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Graph } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { printGraph } from '../../src/graph/print.ts';
import { serializeGraph } from '../../src/graph/serialize.ts';
import { summary } from '../../src/graph/summary.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { decodeModel, encodeModel, loadModel, saveModel } from '../../src/train/model-file.ts';
import { transformerClassifier } from '../../src/train/models.ts';
import { predict } from '../../src/train/predict.ts';
import { expectBitwiseAll } from '../support/expect.ts';

const graph = transformerClassifier({
  vocab: 6,
  length: 3,
  dim: 4,
  heads: 2,
  layers: 1,
  classes: 3,
  dropout: 0.5,
  causal: true,
});
const params = initParams(graph, 1);
const rng = new Rng(2);
const tokens = tensor(
  Array.from({ length: 5 * 3 }, () => rng.int(6)),
  { shape: [5, 3] },
);

const bytesOf = (g = graph, p = params) => Buffer.concat(encodeModel(g, p).chunks);

/** A file with this body (graph bytes, then parameter bytes) and a prefix made right for it. */
function forged(graphBytes: Uint8Array, paramBytes: Uint8Array, version = 1): Buffer {
  const body = Buffer.concat([graphBytes, paramBytes]);
  const prefix = Buffer.alloc(32);
  prefix.write('BFLOWMDL', 0, 'latin1');
  prefix.writeUInt32LE(version, 8);
  prefix.writeUInt32LE(graphBytes.length, 12);
  prefix.writeBigUInt64LE(BigInt(32 + body.length), 16);
  prefix.writeUInt32LE(crc32(body), 24);
  prefix.writeUInt32LE(crc32(prefix.subarray(0, 28)), 28);
  return Buffer.concat([prefix, body]);
}

const thrown = (f: () => unknown): Error => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
};

describe('model files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backflow-model-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('save then load gives the same graph and parameters bit for bit, and the same predictions', async () => {
    const path = join(dir, 'model.bfm');
    const { bytes } = await saveModel(path, graph, params);
    expect((await readFile(path)).length).toBe(bytes);
    const model = await loadModel(path);
    expect(printGraph(model.graph)).toBe(printGraph(graph));
    expect(Object.keys(model.params)).toEqual(graph.params().map((p) => p.name));
    expectBitwiseAll(model.params, params);
    expectBitwiseAll(predict(model, { x: tokens }), predict({ graph, params }, { x: tokens }));
    expect(await readdir(dir)).toEqual(['model.bfm']);
    // Saved again over it: replaced whole.
    const other = initParams(graph, 9);
    await saveModel(path, graph, other);
    expectBitwiseAll((await loadModel(path)).params, other);
    expect(await readdir(dir)).toEqual(['model.bfm']);
  });

  it('refuses every damaged byte: a flip anywhere is a ModelCorruptError (never another model)', () => {
    const good = bytesOf();
    for (let i = 0; i < good.length; i += 3) {
      const bad = Buffer.from(good);
      bad[i]! ^= 1 << (i % 8);
      const err = thrown(() => decodeModel(bad, 'm'));
      expect(err, `byte ${i}`).toBeInstanceOf(ModelCorruptError);
      expect((err as ModelCorruptError).context['part'], `byte ${i}`).toMatch(/^(prefix|body)$/);
    }
  });

  it('refuses a truncated or extended file, naming the lengths', () => {
    const good = bytesOf();
    for (const bad of [
      good.subarray(0, 10),
      good.subarray(0, good.length - 1),
      Buffer.concat([good, Buffer.from([0])]),
    ]) {
      const err = thrown(() => decodeModel(bad, 'm'));
      expect(err).toBeInstanceOf(ModelCorruptError);
      expect(err.message).toMatch(/^model file m is corrupt: \d+ bytes/);
    }
  });

  it('refuses a newer format version with ModelVersionError (checksums right)', () => {
    const good = bytesOf();
    const g = good.readUInt32LE(12);
    const newer = forged(good.subarray(32, 32 + g), good.subarray(32 + g), 2);
    const err = thrown(() => decodeModel(newer, 'm'));
    expect(err).toBeInstanceOf(ModelVersionError);
    expect(err.message).toMatch(/format version 2, newer than the version 1/);
  });

  it('refuses a forged file whose checksums are right but whose graph or parameters are not', () => {
    const good = bytesOf();
    const g = good.readUInt32LE(12);
    const graphBytes = good.subarray(32, 32 + g);
    const paramBytes = good.subarray(32 + g);
    const short = thrown(() => decodeModel(forged(graphBytes, paramBytes.subarray(4)), 'm'));
    expect(short).toBeInstanceOf(ModelCorruptError);
    expect(short.message).toMatch(/the bytes end before parameter/);
    const long = thrown(() =>
      decodeModel(forged(graphBytes, Buffer.concat([paramBytes, Buffer.alloc(8)])), 'm'),
    );
    expect(long.message).toMatch(/8 bytes after the last parameter/);
    // A dropout rate of 2 in a graph that is otherwise fine.
    const nodes = graph.nodes.map((n) => (n.op === 'dropout' ? { ...n, attrs: { ...n.attrs, rate: 2 } } : n));
    const bad = thrown(() =>
      decodeModel(forged(serializeGraph(new Graph(nodes, graph.outputs)), paramBytes), 'm'),
    );
    expect(bad).toBeInstanceOf(ModelCorruptError);
    expect((bad as ModelCorruptError).context['part']).toBe('graph');
    expect(bad.cause).toBeInstanceOf(OpError);
  });

  it('keeps names off prototypes: parameters named __proto__ and constructor are own keys', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 2]);
    const h = b.matmul(x, b.param('__proto__', [2, 2]));
    b.output('y', b.add(h, b.param('constructor', [2])));
    const g = b.build();
    const p = initParams(g, 3);
    const path = join(dir, 'protos.bfm');
    await saveModel(path, g, p);
    const model = await loadModel(path);
    expect(Object.keys(model.params)).toEqual(['__proto__', 'constructor']);
    expect(Object.hasOwn(model.params, '__proto__')).toBe(true);
    expectBitwiseAll(model.params, p);
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
    expect(({} as { constructor: unknown }).constructor).toBe(Object);
  });

  it('saves only a complete, fitting set of parameters, and writes nothing otherwise', async () => {
    const path = join(dir, 'm.bfm');
    const { 'head.b': _, ...missing } = params;
    await expect(saveModel(path, graph, missing)).rejects.toThrow(/parameter 'head.b': missing/);
    await expect(saveModel(path, graph, { ...params, extra: tensor([1]) })).rejects.toThrow(InputError);
    await expect(saveModel(path, graph, { ...params, 'head.b': tensor([1, 2]) })).rejects.toThrow(ShapeError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('file system refusals are ModelFileErrors with the system code', async () => {
    const missing = await loadModel(join(dir, 'none.bfm')).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ModelFileError);
    expect((missing as ModelFileError).context['code']).toBe('ENOENT');
    const noDir = await saveModel(join(dir, 'no', 'm.bfm'), graph, params).catch((e: unknown) => e);
    expect(noDir).toBeInstanceOf(ModelFileError);
    expect((noDir as ModelFileError).context['code']).toBe('ENOENT');
    await writeFile(join(dir, 'text.bfm'), 'not a model at all, but long enough for a prefix');
    await expect(loadModel(join(dir, 'text.bfm'))).rejects.toThrow(/not a backflow model \(bad magic\)/);
  });
});

describe('predict', () => {
  it('runs the forward in evaluation mode: every output but the loss, no labels needed', () => {
    const out = predict({ graph, params }, { x: tokens });
    expect(Object.keys(out)).toEqual(['logits']);
    const all = evaluate(graph, { x: tokens, y: tensor([0, 1, 2, 0, 1]) }, params);
    expectBitwiseAll(out, { logits: all['logits']! });
    const loss = predict({ graph, params }, { x: tokens, y: tensor([0, 1, 2, 0, 1]) }, { outputs: ['loss'] });
    expectBitwiseAll(loss, { loss: all['loss']! });
  });
});

describe('summary', () => {
  it('lists the inputs, each layer with its parameters and count, the outputs and the totals', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3]);
    const h = b.tanh(b.add(b.matmul(x, b.param('fc.w', [3, 4])), b.param('fc.b', [4])));
    b.output('y', b.matmul(h, b.param('out', [4, 2], { dtype: 'float32' })));
    expect(summary(b.build())).toBe(
      [
        'inputs: x f32[B,3]',
        'layer  parameters            count',
        'fc     w f32[3,4], b f32[4]     16',
        'out    out f32[4,2]              8',
        'outputs: y f32[B,2]',
        '24 parameters in 3 tensors (96 B), 8 nodes',
      ].join('\n'),
    );
  });

  it("groups a transformer's parameters by layer", () => {
    const text = summary(graph);
    expect(text).toContain('block0.attn.q  w f32[4,4], b f32[4]');
    expect(text.split('\n').at(-1)).toMatch(/^\d[\d,]* parameters in 22 tensors/);
  });
});
