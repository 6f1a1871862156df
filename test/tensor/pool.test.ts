import { afterEach, describe, expect, it } from 'vitest';
import { Host, type HostEffect } from '../../src/actor/host.ts';
import { referenceStep, splitBatch } from '../../src/autodiff/microbatch.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec, scaled } from '../../src/optim/spec.ts';
import { compile } from '../../src/partition/plan.ts';
import type { Kernels } from '../../src/tensor/kernels.ts';
import { tsKernels } from '../../src/tensor/kernels-ts.ts';
import { installPool, StoragePool } from '../../src/tensor/pool.ts';
import { Rng } from '../../src/tensor/rng.ts';
import {
  allocate,
  allocateUninit,
  cast,
  type Storage,
  Tensor,
  tensor,
  withShape,
} from '../../src/tensor/tensor.ts';
import { bestWasmVariant, createWasmKernels } from '../../src/tensor/wasm/index.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';
import { mlp } from '../support/models.ts';

const KiB = 1024;
const f32 = (n: number) => new Float32Array(n);
/** A pool's storage, given back at once (nothing live). */
function giveBack(pool: StoragePool, ...storages: Storage[]): void {
  for (const s of storages) pool.track(s);
  pool.recycle(new Set());
}

afterEach(() => installPool(null));

describe('StoragePool', () => {
  it('keeps storages per exact shape class: dtype and element count', () => {
    const pool = new StoragePool();
    const s = f32(8 * KiB);
    giveBack(pool, s);
    expect(pool.allocate('float64', 4 * KiB, true)).not.toBe(s); // same bytes, another class
    expect(pool.allocate('float32', 8 * KiB + 1, true)).not.toBe(s);
    expect(pool.allocate('float32', 8 * KiB, true)).toBe(s);
    expect(pool.stats()).toEqual({ hits: 1, misses: 2, pooledBytes: 0, recycledBytes: 32 * KiB });
  });

  it('pools storages of at least minBytes; allocate() leaves smaller ones plain', () => {
    const pool = new StoragePool();
    installPool(pool);
    expect(pool.pools('float32', 4 * KiB - 1)).toBe(false);
    expect(pool.pools('float32', 4 * KiB)).toBe(true);
    expect(pool.pools('float64', 2 * KiB)).toBe(true);
    allocate('float32', 100);
    expect(pool.stats().misses).toBe(0);
    allocate('float32', 4 * KiB);
    expect(pool.stats().misses).toBe(1);
    expect(pool.arenaSize).toBe(1);
  });

  it('counts the bytes its arena keeps alive, and lets go of free storages down to a bound (Note [step arena])', () => {
    const pool = new StoragePool();
    const a = pool.allocate('float32', 4 * KiB, true);
    const [b, c] = [f32(8 * KiB), f32(8 * KiB)];
    pool.track(b);
    pool.track(b);
    pool.track(c);
    expect(pool.arenaBytes).toBe(16 * KiB + 2 * 32 * KiB);
    expect(pool.retainedBytes).toBe(pool.arenaBytes);
    // A transferred storage is forgotten (by the bytes it had); a live one stays; the rest is free.
    structuredClone(b.buffer, { transfer: [b.buffer] });
    pool.recycle(new Set([a.buffer]));
    expect([pool.arenaBytes, pool.pooledBytes]).toEqual([16 * KiB, 32 * KiB]);
    pool.recycle(new Set());
    expect([pool.arenaBytes, pool.pooledBytes, pool.retainedBytes]).toEqual([0, 48 * KiB, 48 * KiB]);
    pool.shrink(40 * KiB);
    expect(pool.pooledBytes).toBeLessThanOrEqual(40 * KiB);
    pool.shrink(0);
    expect(pool.pooledBytes).toBe(0);
  });

  it('holds at most maxBytes, giving up the least recently used class first; refuses what is bigger', () => {
    const pool = new StoragePool({ maxBytes: 3 * 16 * KiB });
    const [a1, a2, b1] = [f32(4 * KiB), f32(4 * KiB), new Float64Array(2 * KiB)];
    giveBack(pool, a1, a2, b1);
    expect(pool.pooledBytes).toBe(48 * KiB);
    expect(pool.allocate('float32', 4 * KiB, true)).toBe(a2); // class a used last
    const c = f32(4 * KiB + 2);
    // a2 stays live; b is the least recently used class: evicted for c; the big one is refused.
    pool.track(c);
    pool.track(f32(20 * KiB));
    pool.recycle(new Set([a2.buffer]));
    expect(pool.pooledBytes).toBe(16 * KiB + 16 * KiB + 8);
    expect(pool.allocate('float64', 2 * KiB, true)).not.toBe(b1);
    expect(pool.allocate('float32', 4 * KiB, true)).toBe(a1);
    expect(pool.allocate('float32', 4 * KiB + 2, true)).toBe(c);
    expect(pool.recycledBytes).toBe(48 * KiB + 16 * KiB + 8);
  });

  it('allocate zero-fills a recycled storage; allocateUninit leaves it as it was (NaN with poison)', () => {
    const pool = new StoragePool({ poison: true });
    installPool(pool);
    const s = allocate('float32', 4 * KiB);
    s.fill(7);
    pool.recycle(new Set());
    expect(Number.isNaN(s[0]!)).toBe(true);
    const u = allocateUninit('float32', 4 * KiB);
    expect(u).toBe(s);
    expect(u.every((v) => Number.isNaN(v))).toBe(true);
    pool.recycle(new Set());
    const z = allocate('float32', 4 * KiB);
    expect(z).toBe(s);
    expect(z.every((v) => Object.is(v, 0))).toBe(true);
    expect(pool.stats()).toMatchObject({ hits: 2, misses: 1 });
  });

  it('when a step starts, each class keeps only as many storages as the last step took', () => {
    const pool = new StoragePool();
    const taken = [pool.allocate('float32', 4 * KiB, false), pool.allocate('float32', 4 * KiB, false)];
    const received = [f32(8 * KiB), f32(8 * KiB)]; // a class this thread never makes (feeds)
    giveBack(pool, ...received, f32(4 * KiB));
    expect(pool.pooledBytes).toBe(2 * 32 * KiB + 3 * 16 * KiB);
    pool.recycle(new Set(), true);
    expect(pool.pooledBytes).toBe(2 * 16 * KiB);
    expect(taken).toContain(pool.allocate('float32', 4 * KiB, false));
    pool.recycle(new Set(), true); // one taken since the last trim: one kept
    expect(pool.pooledBytes).toBe(16 * KiB);
  });

  it('forgets detached storages; keeps live ones recorded until they are not', () => {
    const pool = new StoragePool();
    installPool(pool);
    const sent = allocate('float32', 4 * KiB);
    const live = allocate('float32', 4 * KiB);
    const garbage = allocate('float32', 4 * KiB);
    structuredClone(sent.buffer, { transfer: [sent.buffer] });
    expect(sent.byteLength).toBe(0);
    expect(pool.recycle(new Set([live.buffer]))).toBe(1);
    expect(pool.arenaSize).toBe(1);
    expect(pool.pooledBytes).toBe(16 * KiB);
    expect(pool.recycle(new Set())).toBe(1);
    expect(pool.pooledBytes).toBe(32 * KiB);
    expect([allocate('float32', 4 * KiB), allocate('float32', 4 * KiB)]).toEqual(
      expect.arrayContaining([live, garbage]),
    );
  });
});

describe('StoragePool replenishing (Note [replenishing])', () => {
  const transfer = (s: Storage) => structuredClone(s.buffer, { transfer: [s.buffer] });

  it('a trim owes, per class, what the last step took and did not give back; replenish makes it', () => {
    const pool = new StoragePool();
    const sent = pool.allocate('float32', 4 * KiB, false);
    pool.allocate('float32', 4 * KiB, false);
    const received = f32(8 * KiB); // delivered here, passed on: not this thread's to make
    pool.track(received);
    transfer(sent);
    transfer(received);
    expect(pool.owed).toBe(0);
    pool.recycle(new Set(), true);
    expect(pool.owed).toBe(1);
    expect(pool.replenish()).toBe(1);
    expect(pool.owed).toBe(0);
    expect(pool.replenish()).toBe(0); // once per trim
    expect(pool.pooledBytes).toBe(2 * 16 * KiB);
    expect(pool.recycledBytes).toBe(16 * KiB); // the one given back; the made one is not recycled
    // The next step takes both from the pool, zero-filled, and sends one away again: the trim owes it
    // again, though a storage of the class is free right now.
    const misses = pool.misses;
    const next = [pool.allocate('float32', 4 * KiB, true), pool.allocate('float32', 4 * KiB, true)];
    expect(pool.misses).toBe(misses);
    expect(next.every((s) => s.every((x) => x === 0))).toBe(true);
    transfer(next[0]!);
    pool.recycle(new Set(), true);
    expect(pool.owed).toBe(1);
  });

  it('owes nothing for a class whose storages leave while as many of its shape arrive and come back', () => {
    const pool = new StoragePool();
    transfer(pool.allocate('float32', 4 * KiB, false)); // a parameter's value, sent
    pool.track(f32(4 * KiB)); // a gradient of the same shape, received
    pool.recycle(new Set(), true);
    expect(pool.owed).toBe(0);
    expect(pool.replenish()).toBe(0);
  });

  it("stays within the bound it is given and the pool's own; poisons what it makes in poison mode", () => {
    const pool = new StoragePool({ maxBytes: 40 * KiB, poison: true });
    const round = () => {
      const taken = [0, 1, 2].map(() => pool.allocate('float32', 4 * KiB, false));
      for (const s of taken) transfer(s);
      pool.recycle(new Set(), true);
    };
    round();
    expect(pool.owed).toBe(3);
    expect(pool.replenish(16 * KiB)).toBe(1); // the limit counts what the pool retains
    expect(pool.owed).toBe(0);
    round();
    expect(pool.owed).toBe(3);
    // No limit given: the pool's own bound, 40 KiB of free storages, holds two.
    expect(pool.replenish()).toBe(2);
    expect(pool.allocate('float32', 4 * KiB, false).every(Number.isNaN)).toBe(true);
  });
});

describe('StoragePool buffers for byte wires (Note [tensors beside the frame])', () => {
  it('takes back a written buffer as a free float32 storage, and hands it out unrecorded for a receipt', () => {
    const pool = new StoragePool();
    const b = new ArrayBuffer(16 * KiB);
    expect(pool.takeBuffer(16 * KiB)).toBeNull();
    pool.giveBuffer(b);
    expect(pool.pooledBytes).toBe(16 * KiB);
    expect(pool.takeBuffer(16 * KiB)).toBe(b);
    // Not recorded: the host records the received tensor itself.
    expect(pool.arenaSize).toBe(0);
    expect(pool.stats()).toMatchObject({ hits: 1, misses: 1, pooledBytes: 0 });
    // Sizes that are not pooled are neither kept nor looked for.
    pool.giveBuffer(new ArrayBuffer(KiB));
    pool.giveBuffer(new ArrayBuffer(16 * KiB + 2));
    expect(pool.pooledBytes).toBe(0);
    expect(pool.takeBuffer(16 * KiB + 2)).toBeNull();
    // A written buffer serves the next allocation of its class, as float32 storage.
    pool.giveBuffer(b);
    expect(pool.allocate('float32', 4 * KiB, false).buffer).toBe(b);
  });
});

// Note: allocateUninit call sites must write every element. With a poisoned pool whose every storage
// is a recycled NaN-filled one, each kernel must give the very bits it gives on fresh storage.
const wasm = bestWasmVariant();
const KERNELS: [string, Kernels | Partial<Kernels>][] = [
  ['ts', tsKernels],
  ...(wasm === null
    ? []
    : [[`wasm ${wasm}`, createWasmKernels(wasm, { small: false })] as [string, Partial<Kernels>]]),
];

describe.each(KERNELS)('%s kernels write every element of a recycled storage', (_, k) => {
  const rng = new Rng(2);
  const x = rng.normalTensor([6, 10]);
  const y = rng.normalTensor([6, 10]);
  const row = rng.normalTensor([10]);
  const col = rng.normalTensor([6, 1]);
  const w = rng.normalTensor([10, 7]);
  const idx = tensor([2, 0, 5, 2]);
  const cases: [string, () => Tensor | undefined][] = [
    ...(
      [
        'neg',
        'exp',
        'tanh',
        'sigmoid',
        'relu',
        'abs',
        'square',
        'erf',
        'gelu',
        'geluGrad',
        'sign',
        'leakyRelu',
        'pow',
      ] as const
    ).map((kind): [string, () => Tensor | undefined] => [`unary ${kind}`, () => k.unary?.(kind, x, 0.5)]),
    ...(['add', 'mul', 'maximum', 'greater'] as const).flatMap(
      (kind): [string, () => Tensor | undefined][] => [
        [`binary ${kind}`, () => k.binary?.(kind, x, y)],
        [`binary ${kind} scalar`, () => k.binary?.(kind, x, tensor(2))],
        [`binary ${kind} scalar first`, () => k.binary?.(kind, tensor(2), x)],
        [`binary ${kind} row`, () => k.binary?.(kind, x, row)],
        [`binary ${kind} column`, () => k.binary?.(kind, x, col)],
      ],
    ),
    ['reduce sum', () => k.reduce?.('sum', x, [1])],
    ['reduce max', () => k.reduce?.('max', x, [0])],
    ['matmul', () => k.matmul?.(x, w, false, false)],
    ['matmul transposed', () => k.matmul?.(x, y, true, false)],
    ['transpose', () => k.transpose?.(x, [1, 0])],
    ['transpose by runs', () => k.transpose?.(withShape(x, [2, 3, 10]), [1, 0, 2])],
    ['broadcastTo', () => k.broadcastTo?.(row, [3, 6, 10])],
    ['broadcastTo scalar', () => k.broadcastTo?.(tensor([3]), [6, 10])],
    ['broadcastTo column', () => k.broadcastTo?.(col, [6, 10])],
    ['softmax', () => k.softmax?.(x, 1)],
    ['logSoftmax', () => k.logSoftmax?.(x, 0)],
    ['slice', () => k.slice?.(x, [1, 2], [4, 5])],
    ['pad', () => k.pad?.(x, [1, 0], [2, 3])],
    ['concat', () => k.concat?.([x, y], 1)],
    ['gather', () => k.gather?.(x, idx, 0)],
    ['scatterAdd', () => k.scatterAdd?.(k.gather?.(x, idx, 0) ?? x, idx, [6, 10], 0)],
    ['oneHot', () => k.oneHot?.(idx, 6, 'float32')],
    ['cast', () => cast(x, 'float64')],
    ['scaled', () => scaled(x, 0.25)],
  ];
  it.each(cases)('%s', (_, run) => {
    const fresh = run();
    if (fresh === undefined) return; // not a kernel of this set
    const pool = new StoragePool({ poison: true, minBytes: 1 });
    installPool(pool);
    // Every storage the kernel makes is recycled (poisoned), then made again from the pool.
    run();
    pool.recycle(new Set([x, y, row, col, w, idx].map((t) => t.data.buffer)));
    const again = run()!;
    expect(pool.hits).toBeGreaterThan(0);
    expectBitwise(again, fresh);
  });
});

describe('a host with a poisoned pool, driven without threads', () => {
  /** SGD steps of one host owning the whole MLP; `omitParams` leaves the parameters out of its live set. */
  function train(spec: OptimizerSpec, steps: number, omitParams: boolean) {
    const model = mlp();
    const plan = compile(model.graph, { workers: 1 });
    // Shards come from outside the thread (the coordinator's), so they are made before the pool is in.
    const shards = Array.from({ length: steps }, (_, s) => splitBatch(model.graph, model.feeds(16, s), {}));
    const pool = new StoragePool({ poison: true, minBytes: 16 });
    installPool(pool);
    const params = new Map(model.graph.params().map((n) => [n.id, cast(model.params[n.name!]!)]));
    const host = new Host(plan, 0, params, { pool });
    if (omitParams) {
      const live = host.liveBuffers.bind(host);
      host.liveBuffers = (minBytes) => {
        const set = live(minBytes);
        for (const id of host.paramIds()) set.buffers.delete(host.getParam(id).data.buffer);
        return set;
      };
    }
    host.setOptimizer(spec);
    const losses: number[] = [];
    for (let step = 1; step <= steps; step++) {
      const shard = shards[step - 1]![0]!;
      const start = {
        step,
        microbatches: 1,
        shards: shards[step - 1]!.map((s) => ({
          replica: 0,
          mb: 0,
          bindings: [...s.bindings],
          scale: s.scale,
        })),
      };
      const effects: HostEffect[] = [...host.startStep(start)];
      for (const input of model.graph.inputs())
        effects.push(
          ...host.deliver({
            kind: 'feed',
            step,
            mb: 0,
            replica: 0,
            node: input.id,
            tensor: shard.feeds[input.name!]!,
          }),
        );
      while (host.next() !== null) effects.push(...host.run());
      for (const e of effects)
        if (e.kind === 'report' && e.report.kind === 'loss') losses.push(e.report.value);
      host.applyUpdate({ step, lr: spec.lr!, scale: 1 });
    }
    installPool(null);
    return {
      losses,
      params: Object.fromEntries(
        host.paramIds().map((id) => [model.graph.nodes[id]!.name!, host.getParam(id)]),
      ),
      host,
    };
  }

  function reference(spec: OptimizerSpec, steps: number) {
    const model = mlp();
    const params = Object.fromEntries(Object.entries(model.params).map(([k, v]) => [k, cast(v)]));
    const run = new OptimizerRun(makeOptimizer(spec));
    const losses: number[] = [];
    for (let s = 0; s < steps; s++) {
      const out = referenceStep(model.graph, model.feeds(16, s), params);
      losses.push(out.loss);
      run.apply(params, out.grads);
    }
    return { losses, params };
  }

  const spec: OptimizerSpec = { name: 'sgd', lr: 0.1, momentum: 0.9 };

  it('recycles every step and stays bitwise equal to the reference loop', () => {
    const ref = reference(spec, 4);
    const out = train(spec, 4, false);
    expect(out.losses).toEqual(ref.losses);
    expectBitwiseAll(out.params, ref.params);
    expect(out.host.stats.poolHits).toBeGreaterThan(0);
    expect(out.host.stats.recycledBytes).toBeGreaterThan(0);
  });

  it('the poison shows: a live set without the parameters turns the steps into NaN', () => {
    // The parameters' storages come from the pool too (copies made on this thread): the first step's
    // start already gives them back, and poisons them.
    expect(reference(spec, 3).losses.every(Number.isFinite)).toBe(true);
    const out = train(spec, 3, true);
    expect(out.losses.every(Number.isNaN)).toBe(true);
    expect(Object.values(out.params).some((t) => Number.isNaN(t.data[0]!))).toBe(true);
  });
});

describe('Tensor storage from a pool', () => {
  it('is owned whole, so it can be transferred (Note [owned storage])', () => {
    const pool = new StoragePool();
    installPool(pool);
    const t = new Tensor('float32', [64, 64], allocate('float32', 64 * 64));
    expect(t.data.byteOffset).toBe(0);
    expect(t.data.buffer.byteLength).toBe(t.bytes);
  });
});
