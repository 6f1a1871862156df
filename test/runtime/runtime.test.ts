import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { InputError, ShapeError, StepTimeoutError, WorkerError } from '../../src/errors.ts';
import type { PlacementStrategy } from '../../src/partition/placement.ts';
import { createRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwiseAll } from '../support/expect.ts';
import { mlp, tied } from '../support/models.ts';
import { randomGraph } from '../support/random-graph.ts';
import { expectMatchesReference } from '../support/reference.ts';

const placements: PlacementStrategy[] = ['per-node', 'stages', 'min-comm'];

const MODES = ['in-process', 'threads', 'loopback', 'tcp-loopback'] as const;
type Mode = (typeof MODES)[number];
/** Hosts in this thread start at once; a threads runtime starts a pool (about 1 s): fewer cases there. */
const cheap = (mode: Mode) => mode !== 'threads';

describe.each(MODES)('runtime (%s): bitwise equal to the reference', (mode: Mode) => {
  const model = mlp();
  const feeds = model.feeds(23);
  // Threads: every worker count and placement, one replica count each (a pool start costs ~1 s).
  for (const placement of placements) {
    for (const workers of [1, 2, 3, 4, 8]) {
      const replicaCounts = cheap(mode) ? [1, 2] : [workers % 2 === 0 ? 2 : 1];
      for (const replicas of replicaCounts) {
        it(`MLP, ${placement}, ${workers} workers, ${replicas} replicas, 3 microbatches`, async () => {
          await expectMatchesReference(model.graph, model.params, feeds, {
            mode,
            workers,
            replicas,
            placement,
            microbatches: 3,
          });
        });
      }
    }
  }

  it('a parameter used in two places (tied embedding and output projection)', async () => {
    const t = tied();
    for (const placement of cheap(mode) ? placements : (['per-node'] as const)) {
      await expectMatchesReference(t.graph, t.params, t.feeds(16), {
        mode,
        workers: 3,
        replicas: 2,
        placement,
        microbatches: 2,
      });
    }
  });

  it('random graphs with fan-out over the op set (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1e6 }),
        fc.constantFrom(...placements),
        fc.constantFrom(1, 2, 3, 4, 8),
        fc.constantFrom(1, 2),
        fc.integer({ min: 1, max: 3 }),
        async (seed, placement, workers, replicas, microbatches) => {
          const g = randomGraph(seed, 14);
          await expectMatchesReference(g.graph, g.params, g.feeds(12, seed), {
            mode,
            workers: mode === 'threads' ? Math.min(workers, 3) : workers,
            replicas,
            placement,
            microbatches,
          });
        },
      ),
      { numRuns: { 'in-process': 40, loopback: 20, 'tcp-loopback': 10, threads: 4 }[mode], seed: 42 },
    );
  });
});

describe('runtime in-process: order and state', () => {
  const mode: Mode = 'in-process';
  const model = mlp();
  const feeds = model.feeds(23);

  it('arrival order does not change a bit: 20 random delivery orders, 16 microbatches, 2 replicas', async () => {
    const model2 = mlp();
    const batch = model2.feeds(64, 9);
    for (let shuffleSeed = 0; shuffleSeed < 20; shuffleSeed++) {
      await expectMatchesReference(model2.graph, model2.params, batch, {
        mode,
        workers: 4,
        replicas: 2,
        microbatches: 16,
        placement: 'per-node',
        shuffleSeed,
      });
    }
  });

  it('runs several steps in a row and reads and writes parameters', async () => {
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'stages',
      params: model.params,
      microbatches: 2,
    });
    try {
      let params = model.params;
      for (let step = 0; step < 3; step++) {
        const ref = referenceStep(model.graph, feeds, params, { microbatches: 2 });
        const out = await rt.step(feeds);
        expect(out.loss).toBe(ref.loss);
        // Plain SGD applied on the main thread, then written back.
        params = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, sgd(v, out.grads[k]!, 0.1)]));
        await rt.setParams(params);
        const back = await rt.getParams();
        expectBitwiseAll(back, params);
      }
    } finally {
      await rt.close();
    }
  });
});

function sgd(w: Tensor, g: Tensor, lr: number): Tensor {
  const out = w.data.slice() as typeof w.data;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! - lr * g.data[i]!;
  return new (w.constructor as typeof import('../../src/tensor/tensor.ts').Tensor)(w.dtype, w.shape, out);
}

describe.each(['in-process', 'loopback'] as const)('runtime %s: failures', (mode) => {
  const model = mlp();
  const runtimes: Runtime[] = [];
  afterAll(async () => {
    for (const rt of runtimes) await rt.close();
  });

  it('an op that throws rejects the step with its name, message, stack and custom fields, naming where', async () => {
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'per-node',
      params: model.params,
      microbatches: 4,
    });
    runtimes.push(rt);
    const tanh = model.graph.nodes.find((n) => n.op === 'tanh')!;
    await rt.setFailpoints([{ node: tanh.id, phase: 'backward', mb: 3, action: 'throw' }]);
    const err = await rt.step(model.feeds(8)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    const e = err as WorkerError;
    expect(e.context).toMatchObject({ node: `%${tanh.id}`, op: 'tanh', microbatch: 3, phase: 'backward' });
    expect(e.message).toMatch(/FailpointError/);
    const cause = e.cause as Error & { code?: string; injected?: boolean };
    expect(cause.code).toBe('EFAILPOINT');
    expect(cause.injected).toBe(true);
    expect(cause.stack).toMatch(/host\.ts/);
    // The runtime is usable again once the failpoint is gone, and the parameters were never touched.
    await rt.setFailpoints([]);
    const params = await rt.getParams();
    expectBitwiseAll(params, model.params);
    await expectMatchesReference(
      model.graph,
      model.params,
      model.feeds(8),
      { workers: 2, microbatches: 4 },
      rt,
    );
  });

  it('a lost gradient contribution times out naming the node, microbatch and replica that wait', async () => {
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'per-node',
      params: model.params,
      microbatches: 2,
      stepTimeoutMs: 200,
    });
    runtimes.push(rt);
    const gelu = model.graph.nodes.find((n) => n.op === 'gelu')!;
    await rt.setFailpoints([{ node: gelu.id, phase: 'backward', mb: 1, action: 'drop' }]);
    const err = (await rt.step(model.feeds(8)).catch((e: unknown) => e)) as StepTimeoutError;
    expect(err).toBeInstanceOf(StepTimeoutError);
    const waiting = err.context.waiting as {
      node: string;
      mb: number;
      replica: number;
      waitingFor: string;
    }[];
    // gelu's input (the add before it) never gets its gradient for microbatch 1.
    const producer = `%${gelu.inputs[0]}`;
    expect(waiting).toContainEqual(
      expect.objectContaining({ node: producer, mb: 1, replica: 0, waitingFor: 'gradients' }),
    );
    expect(err.message).toContain(producer);
  });

  it("a host that exits (failpoint 'exit') fails the step naming what it was doing, and breaks the runtime", async () => {
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'per-node',
      params: model.params,
      microbatches: 2,
    });
    runtimes.push(rt);
    const tanh = model.graph.nodes.find((n) => n.op === 'tanh')!;
    await rt.setFailpoints([{ node: tanh.id, phase: 'forward', mb: 1, action: 'exit' }]);
    const err = (await rt.step(model.feeds(8)).catch((e: unknown) => e)) as WorkerError;
    expect(err).toBeInstanceOf(WorkerError);
    const worker = rt.plan.placement[0]![tanh.id];
    expect(err.message).toMatch(
      new RegExp(
        `^worker ${worker} exited unexpectedly \\(code 0\\) during the forward of node %${tanh.id} \\(tanh\\), replica 0, microbatch 1`,
      ),
    );
    expect(err.context).toMatchObject({
      worker,
      exitCode: 0,
      node: `%${tanh.id}`,
      microbatch: 1,
      phase: 'forward',
    });
    await expect(rt.getParams()).rejects.toThrow(
      /failed earlier and cannot continue: worker \d exited unexpectedly/,
    );
    await expect(rt.step(model.feeds(8))).rejects.toThrow(/cannot continue/);
  });

  it('a hung host: the step times out, and the message says which host could not answer', async () => {
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'per-node',
      params: model.params,
      stepTimeoutMs: 200,
    });
    runtimes.push(rt);
    const gelu = model.graph.nodes.find((n) => n.op === 'gelu')!;
    await rt.setFailpoints([{ node: gelu.id, phase: 'backward', action: 'hang' }]);
    const err = (await rt.step(model.feeds(8)).catch((e: unknown) => e)) as StepTimeoutError;
    expect(err).toBeInstanceOf(StepTimeoutError);
    if (mode === 'loopback') {
      const worker = rt.plan.placement[0]![gelu.id];
      expect(err.message).toMatch(
        new RegExp(
          `worker ${worker} did not answer waiting: it is blocked during the backward of node %${gelu.id} \\(gelu\\)`,
        ),
      );
    }
  });
});

describe('runtime in-process: bad input', () => {
  const model = mlp();
  const runtimes: Runtime[] = [];
  afterAll(async () => {
    for (const rt of runtimes) await rt.close();
  });

  it('a feed of the wrong shape fails the step with the input name and both shapes', async () => {
    const rt = await createRuntime(model.graph, { mode: 'in-process', workers: 2, params: model.params });
    runtimes.push(rt);
    const feeds = { ...model.feeds(4), x: model.feeds(4).y! };
    await expect(rt.step(feeds)).rejects.toThrow(ShapeError);
    await expect(rt.step(feeds)).rejects.toThrow(/feed 'x': expected float32\[B,4\], found float32\[4\]/);
  });

  it('a batch too small for the shards is an InputError before anything runs', async () => {
    const rt = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      microbatches: 4,
      params: model.params,
    });
    runtimes.push(rt);
    await expect(rt.step(model.feeds(7))).rejects.toThrow(InputError);
  });

  it('a parameter value of the wrong shape is refused', async () => {
    const bad = { ...model.params, w1: model.params.w2! };
    await expect(createRuntime(model.graph, { mode: 'in-process', workers: 1, params: bad })).rejects.toThrow(
      /parameter 'w1': expected float32\[4,16\], found float32\[16,8\]/,
    );
  });
});

describe.each(MODES)('runtime (%s): duplicate messages', (mode: Mode) => {
  it('duplicated activations and gradients are dropped by their key and counted; the result is bitwise unchanged', async () => {
    const model = mlp();
    const feeds = model.feeds(16);
    const rt = await createRuntime(model.graph, {
      mode,
      workers: 2,
      placement: 'per-node',
      microbatches: 2,
      params: model.params,
    });
    try {
      // Every task of these nodes sends each of its messages twice, forward and backward.
      const dupes = model.graph.nodes.filter((n) => ['tanh', 'gelu', 'matmul'].includes(n.op));
      await rt.setFailpoints(
        dupes.flatMap((n) =>
          (['forward', 'backward'] as const).map((phase) => ({ node: n.id, phase, action: 'dup' as const })),
        ),
      );
      await expectMatchesReference(model.graph, model.params, feeds, { workers: 2, microbatches: 2 }, rt);
      const dropped = (await rt.stats()).reduce((n, h) => n + h.dropped, 0);
      expect(dropped).toBeGreaterThan(0);
    } finally {
      await rt.close();
    }
  });
});
