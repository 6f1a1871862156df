// Options and feeds the runtime could not use are refused with an InputError naming the option, the
// value and what is allowed: options before any worker starts, feeds before any message is sent.
import { describe, expect, it, vi } from 'vitest';
import { InputError, WorkerError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { LinkedCluster } from '../../src/runtime/linked-cluster.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { rejected } from '../support/errors.ts';
import { mlp } from '../support/models.ts';

const model = mlp();
const feeds = model.feeds(8);

/** An option as a test name: JSON would show NaN and the infinities as null. */
const fmt = (options: object) =>
  Object.entries(options)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v) : fmtValue(v)}`)
    .join(', ');
const fmtValue = (v: unknown): string => (typeof v === 'object' && v !== null ? `{${fmt(v)}}` : String(v));

describe('createRuntime refuses an option before any worker starts', () => {
  it.each(
    (
      [
        [{ microbatches: 0 }, /^createRuntime: microbatches: expected an integer >= 1, found 0$/],
        [{ microbatches: 1.5 }, /^createRuntime: microbatches: expected an integer >= 1, found 1\.5$/],
        [{ microbatches: Number.NaN }, /^createRuntime: microbatches: expected an integer >= 1, found NaN$/],
        [
          { stepTimeoutMs: 0 },
          /^createRuntime: stepTimeoutMs: expected a number of milliseconds in \(0, 2147483647\], found 0$/,
        ],
        [{ stepTimeoutMs: Number.NaN }, /^createRuntime: stepTimeoutMs: expected .*, found NaN$/],
        [{ stepTimeoutMs: Number.POSITIVE_INFINITY }, /^createRuntime: stepTimeoutMs: .*found Infinity$/],
        [{ seed: 1.5, params: undefined }, /^createRuntime: seed: expected an integer, found 1\.5$/],
        [{ seed: Number.NaN, params: undefined }, /^createRuntime: seed: expected an integer, found NaN$/],
        [{ shuffleSeed: 0.5 }, /^createRuntime: shuffleSeed: expected an integer, found 0\.5$/],
        [{ nonFinite: 'skipp' }, /^createRuntime: nonFinite: expected one of error, skip, found "skipp"$/],
        [{ mode: 'gpu' }, /^createRuntime: mode: expected one of threads, in-process, .*, found "gpu"$/],
        // Without an lr, the optimizer's default rate is never looked up.
        [{ optimizer: { name: 'rmsprop' } }, /^createRuntime: optimizer: unknown optimizer "rmsprop"/],
        [{ optimizer: { name: 'sgd', lr: -0.1 } }, /^createRuntime: optimizer: sgd lr: expected a finite/],
        [
          { optimizer: { name: 'adam', beta2: 1 } },
          /^createRuntime: optimizer: adam beta2: expected a number/,
        ],
        [{ clipNorm: -1 }, /^createRuntime: clipNorm: expected a finite number > 0, found -1$/],
      ] as const
    ).map(([options, message]) => [fmt(options), options, message] as const),
  )('{%s}', async (_, options, message) => {
    const live = WorkerPool.live;
    const err = await rejected(
      InputError,
      createRuntime(model.graph, {
        mode: 'threads',
        workers: 2,
        params: model.params,
        ...(options as unknown as Partial<RuntimeOptions>),
      }),
    );
    expect(err.message).toMatch(message);
    const [option] = Object.keys(options);
    if (option !== 'optimizer')
      expect(err.context).toMatchObject({ option, found: options[option as never] });
    expect(WorkerPool.live).toBe(live);
  });
});

describe('a createRuntime that fails after its workers started stops them all', () => {
  // Every option is valid: the failure is a worker refusing a call of the start-up, which the checks
  // before the start cannot rule out. The first call of the start-up and the last one.
  it.each(['setParams', 'setTracing'] as const)(
    'a failing %s rejects createRuntime with its error and leaves no worker running',
    async (call) => {
      const live = WorkerPool.live;
      const refusal = new WorkerError(`worker 1 refused ${call}`, { worker: 1 });
      const failing = vi.spyOn(LinkedCluster.prototype, call).mockRejectedValueOnce(refusal);
      try {
        const err = await rejected(
          WorkerError,
          createRuntime(model.graph, {
            mode: 'threads',
            workers: 2,
            schedule: 'gpipe',
            microbatches: 2,
            params: model.params,
            optimizer: { name: 'sgd', lr: 0.1 },
            trace: true,
          }),
        );
        expect(err).toBe(refusal);
        expect(failing).toHaveBeenCalledOnce();
        expect(WorkerPool.live).toBe(live);
      } finally {
        failing.mockRestore();
      }
    },
  );
});

describe('a step refuses feeds that are not the graph inputs, before sending anything', () => {
  it('a feed that names no input: the step rejects naming it and the inputs; the runtime goes on', async () => {
    const runtime = await createRuntime(model.graph, {
      mode: 'in-process',
      workers: 2,
      params: model.params,
    });
    try {
      const err = await rejected(InputError, runtime.step({ ...feeds, z: feeds.x! }));
      expect(err.message).toBe("feed 'z': not an input of the graph (inputs: x, y)");
      expect(err.context).toMatchObject({ node: 'z', expected: ['x', 'y'] });
      expect(Number.isFinite((await runtime.step(feeds)).loss)).toBe(true);
    } finally {
      await runtime.close();
    }
  });

  it("a missing feed named 'constructor' is missing, not 'not a Tensor'", async () => {
    const b = new GraphBuilder();
    const x = b.input('constructor', ['B', 2]);
    b.output('loss', b.mean(b.square(b.matmul(x, b.param('w', [2, 1])))));
    const graph = b.build();
    const runtime = await createRuntime(graph, {
      mode: 'in-process',
      workers: 1,
      params: initParams(graph, 1),
    });
    try {
      const err = await rejected(InputError, runtime.step({}));
      expect(err.message).toBe("feed 'constructor': missing (expected float32[B,2])");
      const fed = await runtime.step({ constructor: tensor([[1, 2]]) });
      expect(Number.isFinite(fed.loss)).toBe(true);
    } finally {
      await runtime.close();
    }
  });
});
