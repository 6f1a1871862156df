// The compile-time memory estimate (Note [memory budget]): each kind of bytes against a count by
// hand, the microbatches in flight of each schedule, and the refusal of a plan over budget.
import { describe, expect, it } from 'vitest';
import { MemoryBudgetError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { channels, channelWindow, creditWaits } from '../../src/partition/channels.ts';
import { checkMemoryBudget, estimateMemory, fmtBytes } from '../../src/partition/memory.ts';
import { compile } from '../../src/partition/plan.ts';
import { hostActions } from '../../src/runtime/pipeline.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { thrown } from '../support/errors.ts';

/** x [B,4] -> tanh(x w_i) for `layers` layers of width 4 -> sum: one layer per stage. */
function chain(layers: number): Graph {
  const b = new GraphBuilder();
  let h = b.input('x', ['B', 4]);
  for (let i = 0; i < layers; i++) h = b.tanh(b.matmul(h, b.param(`w${i}`, [4, 4])));
  b.output('loss', b.sum(h));
  return b.build();
}

describe('estimateMemory', () => {
  it('counts parameters, gradients, optimizer state, kept values, queued values and one task by hand', () => {
    // One worker, batch 8 in 2 microbatches: a shard is 4 rows, a [B,4] f32 value 64 bytes.
    const plan = compile(chain(1), { workers: 1, batchSize: 8 });
    const [w] = estimateMemory(plan, { microbatches: 2, optimizerBytesPerElement: 16 });
    expect(w!.paramBytes).toBe(64); // w0 [4,4]
    expect(w!.gradBytes).toBe(64);
    expect(w!.optimizerBytes).toBe(16 * 16);
    // matmul keeps x (w0 is a parameter, counted once as such), tanh its output; sum keeps nothing.
    expect(w!.keptBytes).toBe(2 * (64 + 64));
    // Every microbatch's feed waits at the input.
    expect(w!.queuedBytes).toBe(2 * 64);
    expect(w!.taskBytes).toBe(64);
    expect(w!.totalBytes).toBe(64 + 64 + 256 + 256 + 128 + 64);
  });

  it('binds symbolic dimensions to one shard of the estimate batch', () => {
    const small = estimateMemory(compile(chain(1), { workers: 1, batchSize: 8 }), { microbatches: 1 })[0]!;
    const large = estimateMemory(compile(chain(1), { workers: 1, batchSize: 64 }), { microbatches: 1 })[0]!;
    expect(large.keptBytes).toBe(8 * small.keptBytes);
  });

  it('keeps every microbatch in flight in dataflow order and with GPipe, and p - s with 1F1B', () => {
    const graph = chain(4);
    const plan = compile(graph, { workers: 4, stages: 4, batchSize: 64 });
    const m = 8;
    const perStage = (actions: ReturnType<typeof hostActions> | null) =>
      estimateMemory(plan, { microbatches: m, actions }).map((w) => w.keptBytes);
    // A shard is 8 rows: a [B,4] f32 value is 128 bytes; each stage keeps its input and its output.
    const kept = 2 * 128;
    expect(perStage(null)).toEqual([m * kept, m * kept, m * kept, m * kept]);
    expect(perStage(hostActions(plan, generateSchedule('gpipe', { workers: 4, microbatches: m })))).toEqual([
      m * kept,
      m * kept,
      m * kept,
      m * kept,
    ]);
    expect(perStage(hostActions(plan, generateSchedule('1f1b', { workers: 4, microbatches: m })))).toEqual([
      4 * kept,
      3 * kept,
      2 * kept,
      1 * kept,
    ]);
  });

  it('queues a channel window of activations at each receiver (Note [activation credits])', () => {
    const plan = compile(chain(2), { workers: 2, batchSize: 16 });
    const m = 8;
    // A shard is 2 rows: stage 0 sends one [B,4] f32 value of 32 bytes per microbatch to worker 1.
    expect(channels(plan).map((c) => [c.stage, c.from, c.to, c.nodes.length])).toEqual([[0, 0, 1, 1]]);
    const queued = (windowBytes: number) =>
      estimateMemory(plan, { microbatches: m, flow: { windowBytes, minWindow: 1 } })[1]!.queuedBytes;
    expect(queued(1)).toBe(32);
    expect(queued(100)).toBe(3 * 32);
    expect(queued(1 << 20)).toBe(m * 32);
    expect(estimateMemory(plan, { microbatches: m })[1]!.queuedBytes).toBe(m * 32);
    expect(channelWindow({ windowBytes: 1, minWindow: 2 }, 32, m)).toBe(2);
    expect(channelWindow(null, 32, m)).toBe(m);
    // Stage 0's forwards wait for stage 1's.
    expect(creditWaits(plan)).toEqual([[1], []]);
  });
});

describe('checkMemoryBudget', () => {
  it('refuses a parameter of 40000 x 40000 with a MemoryBudgetError naming it first', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 40000]);
    b.output('loss', b.sum(b.matmul(x, b.param('huge', [40000, 40000]))));
    const plan = compile(b.build(), { workers: 1 });
    const estimate = estimateMemory(plan, { microbatches: 1 });
    const err = thrown(MemoryBudgetError, () => checkMemoryBudget(estimate, 1 << 30, 'memoryLimitMb 1024'));
    expect(err.message).toMatch(
      /^worker 0 would hold about 17\.9 GiB of tensors, over its memory budget of 1\.0 GiB/,
    );
    expect(err.message).toContain('Largest: huge f32[40000,40000] parameter: 6.0 GiB');
    expect(err.context).toMatchObject({ worker: 0, expected: 1 << 30, phase: 'compile' });
    expect((err.context.largest as { node: string }[])[0]!.node).toBe('huge f32[40000,40000]');
    // Within budget: nothing to say.
    checkMemoryBudget(estimate, 32 * 2 ** 30, 'a big machine');
  });

  it('formats bytes as people read them', () => {
    expect([0, 1023, 1024, 1536, 3.1 * 2 ** 30].map(fmtBytes)).toEqual([
      '0 B',
      '1023 B',
      '1.0 KiB',
      '1.5 KiB',
      '3.1 GiB',
    ]);
  });
});
