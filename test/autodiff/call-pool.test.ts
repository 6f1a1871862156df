// The engine's call pool (Note [call storages]): a call's storages go back to the thread's pool when
// it returns, except those of what it returns, which stay the caller's for good. The pool poisons
// what it takes back (test/support/call-pool-setup.ts), so a storage reused while someone still
// reads it shows as NaN or as another call's values.
import { beforeEach, describe, expect, it } from 'vitest';
import { callPoolStats, configureCallPool } from '../../src/autodiff/call-pool.ts';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { installedPool, installPool, StoragePool } from '../../src/tensor/pool.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

/** loss = sum(tanh(x @ w1) @ w2): every intermediate of a pooled size (16 KiB and more). */
function mlp(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', [32, 64]);
  const w1 = b.param('w1', [64, 128]);
  const w2 = b.param('w2', [128, 64]);
  const h = b.tanh(b.matmul(x, w1));
  b.output('h', h);
  b.output('loss', b.sum(b.matmul(h, w2)));
  return b.build();
}

const rng = new Rng(7);
const params = { w1: rng.uniformTensor([64, 128], -0.2, 0.2), w2: rng.uniformTensor([128, 64], -0.2, 0.2) };
const feed = () => ({ x: rng.uniformTensor([32, 64], -1, 1) });
const copy = (t: Tensor) => ({ shape: [...t.shape], data: t.data.slice() });

/** A one-input op of its input's type whose gradient passes through unchanged, computing `forward`. */
const passThroughOp = (name: string, forward: (x: Tensor) => Tensor) =>
  defineOp({
    name,
    arity: 1,
    saves: { inputs: 'none', output: false },
    infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
    forward: ([x]) => forward(x!),
    vjp: (_o, { g }) => [g],
  });

describe('the engine call pool', () => {
  beforeEach(() => configureCallPool({ poison: true }));

  it('a call reuses the storages of the one before, with the same bits', () => {
    const f = valueAndGrad(mlp(), { loss: 'loss' });
    const x = feed();
    const first = f(x, params);
    const { hits, misses } = callPoolStats();
    expect(misses).toBeGreaterThan(0);
    const second = f(x, params);
    const after = callPoolStats();
    // Every pooled storage of the second call came back from the first but those of the two
    // gradients it returns: the first call's are the caller's.
    expect(after.misses - misses).toBe(2);
    expect(after.hits - hits).toBeGreaterThan(0);
    expect(second.grads.w1!.data.every(Number.isFinite)).toBe(true);
    expectBitwise(second.value, first.value);
    for (const name of ['w1', 'w2']) expectBitwise(second.grads[name]!, first.grads[name]!);
    expect(installedPool()).toBeNull();
  });

  it('what a call returned stays the caller’s through later calls', () => {
    const f = valueAndGrad(mlp(), { loss: 'loss' });
    const kept: { grads: Record<string, Tensor>; copies: Record<string, ReturnType<typeof copy>> }[] = [];
    for (let i = 0; i < 6; i++) {
      const { grads } = f(feed(), params);
      // A storage taken back as the call returned would be NaN already (poison).
      for (const name of ['w1', 'w2']) expect(grads[name]!.data.every(Number.isFinite)).toBe(true);
      kept.push({ grads, copies: { w1: copy(grads.w1!), w2: copy(grads.w2!) } });
      // Outputs of evaluate, the same way.
      const { h } = evaluate(mlp(), feed(), params, ['h']);
      const hCopy = copy(h!);
      f(feed(), params);
      expect(h!.data).toEqual(hCopy.data);
    }
    for (const { grads, copies } of kept) {
      for (const name of ['w1', 'w2']) expect(grads[name]!.data).toEqual(copies[name]!.data);
    }
  });

  it('a call inside an op uses the outer call’s pool, which takes its storages back once', () => {
    const inner = mlp();
    const innerFeeds = feed();
    const expectedH = evaluate(inner, innerFeeds, params, ['h']).h!;
    // An op whose forward evaluates another graph: y = x + h, h of the inner graph.
    const op = passThroughOp('plusInnerHidden', (x) => {
      expect(installedPool()).not.toBeNull();
      const { h } = evaluate(inner, innerFeeds, params, ['h']);
      return new Tensor(
        'float32',
        x.shape,
        (h!.data as Float32Array).map((v, i) => v + x.data[i]!),
      );
    });
    const b = new GraphBuilder();
    const x = b.param('x', [32, 128]);
    b.output('loss', b.sum(b.mul(b.apply(op.name, [x]), b.apply(op.name, [x]))));
    const xv = rng.uniformTensor([32, 128], -1, 1);
    const f = valueAndGrad(b.build(), { loss: 'loss' });
    const first = f({}, { x: xv });
    const recycled = callPoolStats().recycledBytes;
    const second = f({}, { x: xv });
    // d/dx sum((x + h)^2) = 2 (x + h), as float32 sums.
    const want = new Float32Array(xv.size).map((_, i) => 2 * Math.fround(xv.data[i]! + expectedH.data[i]!));
    expect(Array.from(first.grads.x!.data)).toEqual(Array.from(want));
    expectBitwise(second.grads.x!, first.grads.x!);
    // The second call took back storages too, those its ops' inner calls made among them.
    expect(callPoolStats().recycledBytes).toBeGreaterThan(recycled);
    expect(installedPool()).toBeNull();
  });

  it('a call that throws leaves the pool as it was and the caller’s tensors alone', () => {
    let fail = false;
    const op = passThroughOp('failsOnDemand', (x) => {
      if (fail) throw new Error('asked to fail');
      return x;
    });
    const b = new GraphBuilder();
    const xIn = b.input('x', [32, 64]);
    const w1 = b.param('w1', [64, 128]);
    b.output('loss', b.sum(b.tanh(b.apply(op.name, [b.matmul(xIn, w1)]))));
    const f = valueAndGrad(b.build(), { loss: 'loss' });
    const x = feed();
    const good = f(x, { w1: params.w1 });
    const goodCopy = copy(good.grads.w1!);
    fail = true;
    expect(() => f(x, { w1: params.w1 })).toThrow(/asked to fail/);
    expect(installedPool()).toBeNull();
    fail = false;
    const again = f(x, { w1: params.w1 });
    expectBitwise(again.grads.w1!, good.grads.w1!);
    expect(good.grads.w1!.data).toEqual(goodCopy.data);
  });

  it('between calls the pool holds at most the last call’s storages', () => {
    valueAndGrad(mlp(), { loss: 'loss' })(feed(), params);
    expect(callPoolStats().pooledBytes).toBeGreaterThan(0);
    // A graph of small tensors only: nothing of its size is pooled, and the MLP's classes go.
    const b = new GraphBuilder();
    const w = b.param('w', [4]);
    b.output('loss', b.sum(b.tanh(w)));
    valueAndGrad(b.build(), { loss: 'loss' })({}, { w: rng.uniformTensor([4], -1, 1) });
    expect(callPoolStats().pooledBytes).toBe(0);
  });

  it('inside a host (a pool installed) the engine leaves its storages to that pool', () => {
    const host = new StoragePool();
    const f = valueAndGrad(mlp(), { loss: 'loss' });
    const before = callPoolStats();
    // As a host shell runs a task: its pool installed around the call.
    const { grads } = withInstalled(host, () => f(feed(), params));
    expect(callPoolStats()).toEqual(before);
    expect(host.arenaSize).toBeGreaterThan(0);
    expect(grads.w1!.data.every(Number.isFinite)).toBe(true);
  });
});

function withInstalled<R>(pool: StoragePool, f: () => R): R {
  installPool(pool);
  try {
    return f();
  } finally {
    installPool(null);
  }
}
