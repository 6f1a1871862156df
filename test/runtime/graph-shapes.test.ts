// Graph shapes the first runtime tests never made: nodes fed only by parameters and constants,
// parameters the loss does not depend on, and gradients with respect to inputs. Each is checked
// against the reference engine bit for bit, in-process (messages shuffled), on threads, and over byte
// wires (loopback) in memory and over TCP (tcp-loopback).
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { InputError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec } from '../../src/optim/spec.ts';
import type { PlacementStrategy } from '../../src/partition/placement.ts';
import type { ParamPlacement } from '../../src/partition/plan.ts';
import { createRuntime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { bitwiseEqual, cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';
import { fixedInputs } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

const MODES = ['in-process', 'threads', 'loopback', 'tcp-loopback'] as const;
type Mode = (typeof MODES)[number];

function tiedAutoencoder() {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 2]);
  const w = b.param('w', [2, 2]);
  b.output('loss', b.mean(b.square(b.sub(b.matmul(b.matmul(x, w), b.transpose(w)), x))));
  return {
    graph: b.build(),
    params: {
      w: tensor([
        [0.5, 0.25],
        [0, 1],
      ]),
    },
  };
}

/** A graph with a parameter `u` the loss does not depend on, and a second input `s` fed whole to every shard. */
function withUnconnected() {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', 2]);
  const s = b.input('s', [2]);
  const w = b.param('w', [2, 2]);
  b.param('u', [2]);
  b.output('loss', b.mean(b.square(b.mul(b.tanh(b.matmul(x, w)), s))));
  return {
    graph: b.build(),
    params: {
      w: tensor([
        [0.5, 0.25],
        [-0.75, 1],
      ]),
      u: tensor([1, -2]),
    },
    feeds: {
      x: tensor([
        [1, 2],
        [3, 4],
        [-1, 0.5],
        [2, -3],
        [0.25, 1],
        [-2, -1],
        [1.5, 0],
      ]),
      s: tensor([0.5, -1.5]),
    },
  };
}

describe.each(MODES)('graph shapes (%s)', (mode: Mode) => {
  const shuffle = mode === 'in-process' ? { shuffleSeed: 7 } : {};

  it('the tied autoencoder through transpose(w): a node fed only by a parameter fires', async () => {
    const { graph, params } = tiedAutoencoder();
    const feeds = {
      x: tensor([
        [1, 2],
        [3, 4],
      ]),
    };
    const rt = await createRuntime(graph, { mode, workers: 1, params, stepTimeoutMs: 5000 });
    try {
      expect((await rt.step(feeds)).loss).toBe(0.447265625);
    } finally {
      await rt.close();
    }
    await expectMatchesReference(graph, params, feeds, {
      mode,
      workers: 2,
      placement: 'per-node',
      ...shuffle,
    });
  });

  const model = fixedInputs();
  const feeds = model.feeds(12);
  const placements: PlacementStrategy[] = ['per-node', 'stages', 'min-comm'];
  const paramPlacements: ParamPlacement[] = ['sharded', 'replicated', 'replica-0'];
  const cases: RuntimeOptions[] = [];
  for (const placement of placements) {
    // Threads start a pool per case (about 1 s): fewer cases there.
    for (const workers of mode !== 'threads' ? [1, 2, 3, 4] : [2, 3]) {
      for (const replicas of workers % 2 === 0 ? [1, 2] : [1]) {
        for (const paramPlacement of replicas > 1 && mode !== 'threads'
          ? paramPlacements
          : ['sharded' as const])
          cases.push({ workers, placement, replicas, paramPlacement, microbatches: 3 });
      }
    }
  }
  for (const schedule of ['gpipe', '1f1b', 'zb-h1'] as const)
    cases.push(
      { workers: 2, schedule, microbatches: 4 },
      { workers: 4, replicas: 2, schedule, microbatches: 2 },
    );
  cases.push({ workers: 2, schedule: 'interleaved-1f1b', chunks: 2, microbatches: 4 });
  it.each(cases.map((c) => [JSON.stringify(c), c] as const))(
    'transpose(W), sum(square(W)) and exp(const): %s',
    async (_, options) => {
      await expectMatchesReference(model.graph, model.params, feeds, { mode, ...options, ...shuffle });
    },
  );

  it('a parameter the loss does not depend on: one warning, a zero gradient, and no stall with the optimizer on the workers', async () => {
    const { graph, params, feeds: batch } = withUnconnected();
    const warnings: string[] = [];
    const spec: OptimizerSpec = { name: 'adamw', lr: 0.1, weightDecay: 0.5 };
    const rt = await createRuntime(graph, {
      mode,
      workers: 2,
      replicas: 2,
      microbatches: 2,
      params,
      optimizer: spec,
      stepTimeoutMs: 5000,
      onWarning: (m) => warnings.push(m),
    });
    // The reference loop: the same optimizer on the reference gradients (u's is zero).
    const values = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, cast(v)]));
    const run = new OptimizerRun(makeOptimizer(spec));
    try {
      for (let s = 0; s < 3; s++) {
        const ref = referenceStep(graph, batch, values, { replicas: 2, microbatches: 2 });
        expectBitwise(ref.grads.u!, tensor([0, 0]));
        expect((await rt.step(batch)).loss).toBe(ref.loss);
        run.apply(values, ref.grads);
      }
      const after = await rt.getParams();
      for (const name of ['w', 'u']) expectBitwise(after[name]!, values[name]!, name);
      // Weight decay moved u although its gradient is zero, as it does in the reference loop.
      expect(bitwiseEqual(after.u!, params.u)).toBe(false);
    } finally {
      await rt.close();
    }
    expect(warnings).toEqual(['u is not connected to the loss %8: its gradient is zero']);
    // Without an optimizer the step returns its zero gradient.
    await expectMatchesReference(graph, params, batch, { mode, workers: 2, microbatches: 2, ...shuffle });
  });

  it('gradients with respect to inputs: batched ones assembled in batch order, unbatched ones summed', async () => {
    const { graph, params, feeds: batch } = withUnconnected();
    for (const options of [
      { workers: 1 },
      { workers: 2, placement: 'per-node', microbatches: 3 },
      { workers: 4, replicas: 2, microbatches: 2, placement: 'stages' },
      { workers: 2, schedule: '1f1b', microbatches: 3 },
      { workers: 2, schedule: 'zb-h1', microbatches: 2 },
    ] as RuntimeOptions[]) {
      await expectMatchesReference(graph, params, batch, {
        mode,
        ...options,
        wrt: ['x', 's', 'w'],
        ...shuffle,
      });
    }
    // Only inputs: the step returns their gradients (and no parameter's).
    const rt = await createRuntime(graph, { mode, workers: 2, microbatches: 2, params, wrt: ['x'] });
    try {
      const out = await rt.step(batch);
      expect(Object.keys(out.grads)).toEqual(['x']);
      expect(out.grads.x!.shape).toEqual([7, 2]);
      const ref = referenceStep(graph, batch, params, { microbatches: 2, wrt: ['x'] });
      expectBitwise(out.grads.x!, ref.grads.x!);
    } finally {
      await rt.close();
    }
  });
});

describe('wrt', () => {
  it('names a parameter or an input, or compile refuses it before any worker starts', async () => {
    const { graph, params } = withUnconnected();
    const tanh = graph.nodes.find((n) => n.op === 'tanh')!;
    const err = await createRuntime(graph, { workers: 2, params, wrt: ['w', tanh.id] }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/wrt names %\d+, a tanh node; expected a parameter or an input/);
  });

  it('an input in wrt that the loss does not depend on gets a zero gradient of its fed shape', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 2]);
    b.input('z', ['B', 3]);
    b.output('loss', b.mean(b.matmul(x, b.param('w', [2, 1]))));
    const graph = b.build();
    const params = { w: tensor([[1], [2]]) };
    const feeds: Record<string, Tensor> = {
      x: tensor([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
      z: tensor([
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
      ]),
    };
    const warnings: string[] = [];
    const rt = await createRuntime(graph, {
      mode: 'in-process',
      workers: 2,
      microbatches: 3,
      params,
      wrt: ['w', 'z'],
      onWarning: (m) => warnings.push(m),
    });
    try {
      const out = await rt.step(feeds);
      expectBitwise(
        out.grads.z!,
        tensor([
          [0, 0, 0],
          [0, 0, 0],
          [0, 0, 0],
        ]),
      );
      expect(warnings).toEqual([expect.stringMatching(/^z is not connected to the loss/)]);
    } finally {
      await rt.close();
    }
  });
});
