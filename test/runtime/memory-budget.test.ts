// Bounded memory (Note [memory budget]): plans too big for a worker's budget are refused before any
// worker starts, a step whose real batch would not fit fails naming worker and node before the
// allocation (and the runtime goes on), and worker counts the machine cannot run are refused.
import { availableParallelism, totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { InputError, MemoryBudgetError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { deserializeGraph, serializeGraph } from '../../src/graph/serialize.ts';
import { estimateMemory } from '../../src/partition/memory.ts';
import { compile } from '../../src/partition/plan.ts';
import { MEMORY_FRACTION, memoryBudget, WORKERS_PER_CORE } from '../../src/runtime/budget.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { rejected } from '../support/errors.ts';
import { mlp } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

/** A graph file of a few hundred bytes declaring a [n, n] parameter. */
function hugeParamFile(n: number): Uint8Array {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', n]);
  b.output('loss', b.sum(b.matmul(x, b.param('w', [n, n]))));
  return serializeGraph(b.build());
}

/** A [B,64] x [64,4096] layer: 1 MiB of weights, 16 KiB of activation per row of the batch. */
function wideLayer() {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 64]);
  b.output('loss', b.sum(b.tanh(b.matmul(x, b.param('w', [64, 4096])))));
  const graph = b.build();
  return {
    graph,
    params: initParams(graph, 1),
    feeds: (rows: number) => ({ x: new Rng(2).normalTensor([rows, 64]) }),
  };
}

describe('a plan over the memory budget is refused before any worker starts', () => {
  const file = hugeParamFile(40000);
  const workers = 4;
  const graph = deserializeGraph(file);
  const needs = Math.max(
    ...estimateMemory(compile(graph, { workers }), { microbatches: 1 }).map((w) => w.totalBytes),
  );

  it.skipIf(needs <= memoryBudget({ workers }).bytes)(
    `a ${file.length}-byte graph file declaring a [40000, 40000] parameter, with the default budget`,
    async () => {
      expect(file.length).toBeLessThan(400);
      const err = await rejected(MemoryBudgetError, createRuntime(graph, { workers }));
      expect(err.message).toContain('Largest: w f32[40000,40000] parameter: 6.0 GiB');
      expect(err.message).toContain(`the default: ${MEMORY_FRACTION} of this machine's`);
      expect(err.context.phase).toBe('compile');
    },
  );

  it('a 3.1 GB activation of fixed shape, with memoryLimitMb', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1000, 1]);
    b.output('loss', b.sum(b.matmul(x, b.param('w', [1, 800000]))));
    const err = await rejected(
      MemoryBudgetError,
      createRuntime(b.build(), { workers: 1, memoryLimitMb: 2048 }),
    );
    expect(err.message).toMatch(
      /^worker 0 would hold about 3\.0 GiB of tensors, over its memory budget of 2\.0 GiB/,
    );
    expect(err.message).toContain('Largest: %2 f32[1000,800000] the output of one task');
    expect(err.context).toMatchObject({ worker: 0, expected: 2048 * 2 ** 20 });
  });

  it('the default budget is a share of the machine over the workers', () => {
    expect(memoryBudget({ workers: 4 }).bytes).toBe(Math.floor((totalmem() * MEMORY_FRACTION) / 4));
    expect(memoryBudget({ workers: 4, memoryLimitMb: 100 }).bytes).toBe(100 * 2 ** 20);
    for (const bad of [0, -1, Number.NaN, '8' as unknown as number])
      expect(() => memoryBudget({ workers: 1, memoryLimitMb: bad })).toThrow(InputError);
  });
});

describe.each(['in-process', 'loopback', 'threads'] as const)('%s: a step over the budget', (mode) => {
  it('fails naming worker and node before the allocation, and the runtime goes on', async () => {
    const { graph, params, feeds } = wideLayer();
    // The estimate binds B to 32 rows (2 MiB of activations): within 16 MiB. A batch of 2048 rows
    // makes a 32 MiB activation.
    const rt = await createRuntime(graph, { mode, workers: 1, memoryLimitMb: 16, params });
    try {
      const err = await rejected(MemoryBudgetError, rt.step(feeds(2048)));
      expect(err.message).toMatch(/the forward of %2 \(matmul\) would make 32\.0 MiB/);
      expect(err.message).toMatch(/over its memory budget of 16\.0 MiB/);
      expect(err.context).toMatchObject({ worker: 0, node: '%2', phase: 'forward', microbatch: 0 });
      await expectMatchesReference(graph, params, feeds(64), { mode, workers: 1 }, rt);
      const [stats] = await rt.stats();
      expect(stats!.peakLiveBytes).toBeLessThanOrEqual(16 * 2 ** 20);
      expect(stats!.liveBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    } finally {
      await rt.close();
    }
  });
});

/** An MLP of 4 tanh layers of width 128: a [32,128] f32 activation is 16 KiB, a pooled storage. */
function wideMlp() {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 128]);
  const y = b.input('y', ['B']);
  let h = x;
  for (let i = 0; i < 4; i++) h = b.tanh(b.matmul(h, b.param(`w${i}`, [128, 128])));
  b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('out', [128, 8])), y));
  const graph = b.build();
  const feeds = (seed: number) => {
    const rng = new Rng(seed);
    return { x: rng.normalTensor([256, 128]), y: tensor(Array.from({ length: 256 }, () => rng.int(8))) };
  };
  return { graph, params: initParams(graph, 4), feeds };
}

describe.each(['loopback', 'threads'] as const)('%s: the storage pool under memory pressure', (mode) => {
  it('gives dead storages back mid-step; with poison, every step stays bitwise equal', async () => {
    const { graph, params, feeds } = wideMlp();
    // 1F1B over 2 stages, 8 microbatches of 32 rows: the live books stay near half a MiB, but a
    // step allocates a few MiB of pooled storages, which the arena would keep to the step's end.
    const options: RuntimeOptions = { mode, workers: 2, schedule: '1f1b', microbatches: 8, memoryLimitMb: 1 };
    const rt = await createRuntime(graph, { ...options, params, pool: { poison: true } });
    try {
      await expectMatchesReference(graph, params, feeds(1), options, rt);
      // Without an optimizer the first step's storages go back at the next start: any given back
      // already went back under pressure.
      for (const s of await rt.stats()) {
        expect(s.recycledBytes).toBeGreaterThan(0);
        expect(s.peakLiveBytes).toBeLessThanOrEqual(2 ** 20);
      }
      await expectMatchesReference(graph, params, feeds(2), options, rt);
    } finally {
      await rt.close();
    }
  });
});

describe('worker counts the machine cannot run are refused', () => {
  it('1000 workers, anywhere', async () => {
    const { graph } = mlp();
    for (const mode of ['threads', 'in-process'] as const) {
      const err = await rejected(InputError, createRuntime(graph, { mode, workers: 1000 }));
      expect(err.message).toMatch(/1000 workers is more than this runtime starts .*set maxWorkers/);
    }
  });

  it(`more than ${WORKERS_PER_CORE} threads per core`, async () => {
    const workers = WORKERS_PER_CORE * availableParallelism() + 1;
    const err = await rejected(InputError, createRuntime(mlp().graph, { workers }));
    expect(err.message).toContain(`${WORKERS_PER_CORE} threads per core`);
    expect(err.context).toMatchObject({ option: 'workers', found: workers });
  });

  it('maxWorkers lowers the limit, or lifts it', async () => {
    const { graph, params, feeds } = mlp();
    await rejected(InputError, createRuntime(graph, { mode: 'in-process', workers: 3, maxWorkers: 2 }));
    await rejected(InputError, createRuntime(graph, { workers: 1, maxWorkers: 0 }));
    const workers = 300;
    const rt = await createRuntime(graph, { mode: 'in-process', workers: 3, maxWorkers: 3, params });
    await expectMatchesReference(graph, params, feeds(12), { mode: 'in-process', workers: 3 }, rt);
    await rt.close();
    const many = await createRuntime(graph, {
      mode: 'in-process',
      workers,
      maxWorkers: workers,
      placement: 'per-node',
      params,
    });
    await many.close();
  });
});
