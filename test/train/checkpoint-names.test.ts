// Names that Object.prototype also answers to, through the runtime, a checkpoint file and back
// (Note [names as keys]); and forged files that name such keys.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gradcheck } from '../../src/autodiff/gradcheck.ts';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { CheckpointShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { createRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';
import { reforge } from './fixtures/forge-checkpoint.ts';

const NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'] as const;

/** The own property names of the objects a stray write by name would land on. */
function builtins(): string[][] {
  return [Object.prototype, Object, Object.prototype.toString, Object.prototype.hasOwnProperty, Function].map(
    (o) => Object.getOwnPropertyNames(o).sort(),
  );
}
const pristine = builtins();

function expectUnpolluted(): void {
  expect(builtins()).toEqual(pristine);
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  expect(({} as Record<string, unknown>)['m']).toBeUndefined();
}

/** Every parameter, input and output named after something Object.prototype has. */
function namedGraph(): Graph {
  const b = new GraphBuilder();
  const init = { init: { kind: 'uniform', low: -1, high: 1 } } as const;
  const x = b.input('valueOf', ['B', 3]);
  const y = b.input('isPrototypeOf', ['B', 2]);
  const h = b.tanh(b.add(b.matmul(x, b.param('__proto__', [3, 4], init)), b.param('constructor', [4], init)));
  const out = b.mul(b.matmul(h, b.param('toString', [4, 2], init)), b.param('hasOwnProperty', [2], init));
  b.output('propertyIsEnumerable', out);
  b.output('loss', b.mse(out, y));
  return b.build();
}

const rng = new Rng(7);
const batch = () => ({
  valueOf: new Tensor(
    'float32',
    [4, 3],
    Float32Array.from({ length: 12 }, () => rng.uniform(-1, 1)),
  ),
  isPrototypeOf: new Tensor(
    'float32',
    [4, 2],
    Float32Array.from({ length: 8 }, () => rng.uniform(-1, 1)),
  ),
});

const dirs: string[] = [];
let dir = '';
const runtimes: Runtime[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backflow-names-'));
  dirs.push(dir);
});
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
  expectUnpolluted();
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe.each(['in-process', 'loopback'] as const)('names Object.prototype has, %s', (mode) => {
  const graph = namedGraph();
  const start = async (optimizer: boolean) => {
    const runtime = await createRuntime(graph, {
      mode,
      workers: 2,
      replicas: 2,
      params: initParams(graph, 3),
      ...(optimizer ? { optimizer: { name: 'adam', lr: 0.1 } } : {}),
    });
    runtimes.push(runtime);
    return runtime;
  };

  it('feeds and gradients by name, bitwise equal to the reference engine', async () => {
    const runtime = await start(false);
    const feeds = batch();
    const out = await runtime.step(feeds);
    expect(Object.keys(out.grads).sort()).toEqual([...NAMES].sort());
    const reference = referenceStep(graph, feeds, initParams(graph, 3), { replicas: 2 });
    expect(out.loss).toBe(reference.loss);
    expectBitwiseAll(out.grads, reference.grads);
  });

  it('a checkpoint keeps every parameter and its optimizer state, and the run goes on bitwise', async () => {
    const runtime = await start(true);
    for (let i = 0; i < 2; i++) await runtime.step(batch());
    const params = await runtime.getParams();
    const optimizer = await runtime.getOptimizerState();
    expect(Object.keys(params).sort()).toEqual([...NAMES].sort());
    expect(Object.keys(optimizer.states).sort()).toEqual([...NAMES].sort());
    for (const name of NAMES) expect(Object.keys(optimizer.states[name]!).sort()).toEqual(['m', 'v']);
    await saveCheckpoint(dir, { step: 2, params, optimizer, rng: {}, cursor: null });

    const expectShapes = Object.fromEntries(graph.params().map((n) => [n.name!, n.shape as number[]]));
    const loaded = await loadCheckpoint(dir, { expect: expectShapes });
    expect(Object.keys(loaded.params).sort()).toEqual([...NAMES].sort());
    expectBitwiseAll(loaded.params, params);
    expect(Object.keys(loaded.optimizer!.states).sort()).toEqual([...NAMES].sort());
    for (const name of NAMES) expectBitwiseAll(loaded.optimizer!.states[name]!, optimizer.states[name]!);

    const resumed = await start(true);
    await resumed.setParams(loaded.params);
    await resumed.setOptimizerState(loaded.optimizer!);
    const next = batch();
    expect((await resumed.step(next)).loss).toBe((await runtime.step(next)).loss);
    const [a, b] = [await resumed.getParams(), await runtime.getParams()];
    for (const name of NAMES) expectBitwise(a[name]!, b[name]!, name);
  });
});

it('the reference engine and gradcheck take such names too', () => {
  const graph = namedGraph();
  const report = gradcheck(graph, { loss: 'loss', feeds: batch(), params: initParams(graph, 3) });
  expect(report.ok).toBe(true);
  expect(report.checked).toBe(12 + 4 + 8 + 2);
});

describe('forged checkpoint files naming such keys', () => {
  const t = (v: number) => new Tensor('float64', [2], new Float64Array([v, v + 1]));
  /** A genuine file whose one parameter and its state are then renamed in the header. */
  async function genuine(): Promise<Buffer> {
    await saveCheckpoint(dir, {
      step: 1,
      params: { w: t(1) },
      optimizer: { name: 'adam', step: 1, states: { w: { m: t(2), v: t(3) } } },
      rng: {},
      cursor: null,
    });
    return readFile(join(dir, CHECKPOINT_FILE));
  }
  type Entry = { kind: string; name: string; key?: string };
  const rename = async (param: string, state: string, key: string) =>
    writeFile(
      join(dir, CHECKPOINT_FILE),
      reforge(await genuine(), (h) => {
        for (const e of h['tensors'] as Entry[]) {
          e.name = e.kind === 'param' ? param : state;
          if (e.key === 'm') e.key = key;
        }
      }),
    );

  it.each(NAMES)(
    'a parameter and its state named %s load as own keys, Object.prototype untouched',
    async (name) => {
      await rename(name, name, 'polluted');
      const loaded = await loadCheckpoint(dir, { expect: { [name]: [2] } });
      expect(Object.keys(loaded.params)).toEqual([name]);
      expectBitwise(loaded.params[name]!, t(1));
      expect(Object.keys(loaded.optimizer!.states)).toEqual([name]);
      expectBitwise(loaded.optimizer!.states[name]!['polluted']!, t(2));
      expectBitwise(loaded.optimizer!.states[name]!['v']!, t(3));
      expectUnpolluted();
    },
  );

  it.each(NAMES)(
    'state of a parameter %s the file does not hold is kept apart from the prototype',
    async (name) => {
      await rename('w', name, 'polluted');
      const loaded = await loadCheckpoint(dir);
      expect(Object.keys(loaded.optimizer!.states).sort()).toEqual([name]);
      expectUnpolluted();
    },
  );

  it.each(NAMES)(
    'a state key %s loads as an own key of its parameter, Object.prototype untouched',
    async (key) => {
      await rename('w', 'w', key);
      const loaded = await loadCheckpoint(dir, { expect: { w: [2] } });
      const state = loaded.optimizer!.states['w']!;
      expect(Object.keys(state).sort()).toEqual([key, 'v'].sort());
      expect(Object.hasOwn(state, key)).toBe(true);
      expectBitwise(state[key]!, t(2));
      expectBitwise(state['v']!, t(3));
      expectUnpolluted();
    },
  );

  it.each(NAMES)('a parameter %s that is missing or not expected is a CheckpointShapeError', async (name) => {
    await rename('w', 'w', 'm');
    const missing = loadCheckpoint(dir, { expect: { w: [2], [name]: [3] } });
    await expect(missing).rejects.toThrow(CheckpointShapeError);
    await expect(missing).rejects.toThrow(`'${name}' is missing (expected [3])`);
    await rename(name, name, 'm');
    const unexpected = loadCheckpoint(dir, { expect: { w: [2] } });
    await expect(unexpected).rejects.toThrow(CheckpointShapeError);
    await expect(unexpected).rejects.toThrow(`'${name}' is not an expected parameter`);
  });
});
