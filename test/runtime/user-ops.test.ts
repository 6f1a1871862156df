// Users' own ops on worker threads (Note [user ops on workers]): the `ops` option names the modules
// that define them, which the coordinator and every worker import; what it refuses, and when.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { blobs } from '../../src/data/synthetic.ts';
import { OpError, OpModuleError, WorkerError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { Graph } from '../../src/graph/graph.ts';
import { mlp } from '../../src/graph/nn.ts';
import { initParams } from '../../src/graph/params.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';

import { Trainer } from '../../src/train/trainer.ts';
import { cube } from '../fixtures/ops/cube.ts';
import { expectMatchesReference } from '../support/reference.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/ops/${name}`, import.meta.url));
const CUBE = fixture('cube.ts');
const CUBE_URL = pathToFileURL(CUBE).href;

/** x -> mlp -> cube (named 'cubed') -> softmax cross-entropy. */
function cubeGraph(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 4]);
  const y = b.input('y', ['B']);
  const cubed = b.name(b.apply(cube.name, [mlp(b, x, [8, 3], { name: 'mlp' })]), 'cubed');
  b.output('loss', b.softmaxCrossEntropy(cubed, y));
  return b.build();
}
const graph = cubeGraph();
const cubed = graph.node('cubed');
const params = initParams(graph, 7);
const data = blobs({ perClass: 4, classes: 3, features: 4, seed: 3 });
const feeds = { x: data.x, y: data.y };
const MICROBATCHES = 2;

/** The graph with its user op renamed to one that nobody defines. */
const undefinedOp = 'cubeNobodyDefines';
const orphan = new Graph(
  graph.nodes.map((n) => (n.op === cube.name ? { ...n, op: undefinedOp } : n)),
  graph.outputs,
);

async function rejection(p: Promise<unknown>): Promise<Error & { context: Record<string, unknown> }> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error & { context: Record<string, unknown> }) => e,
  );
}

afterEach(() => vi.restoreAllMocks());

describe('a graph with a user op on worker threads', () => {
  it.each([
    ['2 workers, the op and its consumer on different workers (an absolute path)', 1, CUBE],
    ['2 workers, 2 replicas (a path relative to the working directory)', 2, './test/fixtures/ops/cube.ts'],
  ])('%s: loss and gradients bitwise equal to the reference', async (_, replicas, module) => {
    const live = WorkerPool.live;
    const options: RuntimeOptions = {
      mode: 'threads',
      workers: 2,
      replicas,
      placement: 'per-node',
      microbatches: MICROBATCHES,
      params,
      ops: [module],
    };
    const runtime = await createRuntime(graph, options);
    try {
      if (replicas === 1) {
        const placement = runtime.plan.placement[0]!;
        const consumers = graph.nodes.filter((n) => n.inputs.includes(cubed.id));
        expect(consumers.length).toBeGreaterThan(0);
        for (const c of consumers) expect(placement[c.id]).not.toBe(placement[cubed.id]);
      }
      await expectMatchesReference(graph, params, feeds, options, runtime);
    } finally {
      await runtime.close();
    }
    expect(WorkerPool.live).toBe(live);
  });

  it('the Trainer passes the option on (a file: URL): its first step has the reference loss', async () => {
    const trainer = new Trainer(graph, {
      workers: 2,
      placement: 'per-node',
      params,
      ops: [CUBE_URL],
      optimizer: { name: 'sgd', lr: 0.1 },
    });
    try {
      const { loss } = await (await trainer.start()).step(feeds);
      expect(loss).toBe(referenceStep(graph, feeds, params).loss);
    } finally {
      await trainer.close();
    }
  });
});

describe('what the ops option refuses, before any worker starts', () => {
  it('a module that does not exist: OpModuleError naming it, with the import error as cause', async () => {
    const spawn = vi.spyOn(WorkerPool, 'create');
    const missing = fixture('missing.ts');
    const err = await rejection(createRuntime(graph, { workers: 2, params, ops: [CUBE, missing] }));
    expect(err).toBeInstanceOf(OpModuleError);
    const url = pathToFileURL(missing).href;
    expect(err.message).toMatch(new RegExp(`^cannot import op module '${url}': `));
    expect(err.context).toMatchObject({ module: url });
    expect(err.cause).toBeInstanceOf(Error);
    expect((err.cause as Error).message).toMatch(/missing\.ts/);
    expect(spawn).not.toHaveBeenCalled();
  });

  it('a module that throws when imported: OpModuleError with what it threw as cause', async () => {
    const spawn = vi.spyOn(WorkerPool, 'create');
    const err = await rejection(createRuntime(graph, { workers: 2, params, ops: [fixture('throws.ts')] }));
    expect(err).toBeInstanceOf(OpModuleError);
    expect(err.message).toMatch(
      /^cannot import op module 'file:\/\/.*\/throws\.ts': Error: this op module is broken/,
    );
    expect(err.cause).toMatchObject({ message: 'this op module is broken', code: 'EBROKENOPS' });
    expect(spawn).not.toHaveBeenCalled();
  });

  it('an op that no module defines: OpError naming the op, its node and the modules loaded', async () => {
    const spawn = vi.spyOn(WorkerPool, 'create');
    const err = await rejection(createRuntime(orphan, { workers: 2, params, ops: [CUBE] }));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(
      new RegExp(
        `^%${cubed.id}: unknown op '${undefinedOp}': neither a built-in op nor defined by the op modules '${CUBE_URL}'`,
      ),
    );
    // The graph's lines around the node, as in every graph error.
    expect(err.message).toContain(`> %${cubed.id} "cubed" = ${undefinedOp} %`);
    expect(err.context).toMatchObject({ op: undefinedOp, node: 'cubed', modules: [CUBE_URL] });
    expect(spawn).not.toHaveBeenCalled();
  });

  it('a user op defined in this thread only, with no op modules: OpError saying to name its module', async () => {
    const spawn = vi.spyOn(WorkerPool, 'create');
    const err = await rejection(createRuntime(graph, { workers: 2, params }));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(
      new RegExp(
        `^%${cubed.id}: op 'cube' is defined in this thread only: .*add the module that defines 'cube' to \`ops\``,
      ),
    );
    expect(err.context).toMatchObject({ op: 'cube', node: 'cubed', modules: [] });
    expect(spawn).not.toHaveBeenCalled();
    // In this thread it runs: the in-process runtime needs no module.
    const inProcess = await createRuntime(graph, { mode: 'in-process', workers: 2, params });
    try {
      expect((await inProcess.step(feeds)).loss).toBe(referenceStep(graph, feeds, params).loss);
    } finally {
      await inProcess.close();
    }
  });
});

describe('a module that fails in the workers only', () => {
  it('rejects createRuntime with a WorkerError naming the module; every worker has exited', async () => {
    const live = WorkerPool.live;
    const module = fixture('throws-in-worker.ts');
    const err = await rejection(createRuntime(graph, { workers: 2, params, ops: [CUBE, module] }));
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toMatch(
      new RegExp(
        `init failed: OpModuleError: cannot import op module '${pathToFileURL(module).href}': Error: this op module refuses to load in a worker`,
      ),
    );
    expect(WorkerPool.live).toBe(live);
  });
});
