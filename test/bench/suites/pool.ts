/**
 * What recycling tensor storages on the workers saves (Note [storage pool]). Each case and its
 * baseline run in alternating rounds on this shared machine; ratios are medians of per-round ratios.
 *
 * - `transfer-16mib`: two plain workers (eval code, no runtime) pass a 16 MiB float32 buffer back and
 *   forth; at each hop the sender writes every element of its output buffer (as a kernel does) and
 *   transfers it. `fresh`: a new Float32Array per hop; `recycled`: the buffer received last, kept in a
 *   free list. ms per hop, and `ratio_fresh_vs_recycled`.
 * - `pipeline-16mib`: a 2-stage 1F1B pipeline whose boundary activation (and gradient) is 16 MiB per
 *   microbatch, elementwise layers (4096 x 1024 float32), SGD on the workers, 2 microbatches: step
 *   time with the pool (default) against `pool: false`, `ratio_off_vs_on`, and the pool's counters.
 */
import { MessageChannel, Worker } from 'node:worker_threads';
import { GraphBuilder } from '../../../src/graph/builder.ts';
import type { Graph } from '../../../src/graph/graph.ts';
import { initParams } from '../../../src/graph/params.ts';
import { createRuntime, type Runtime } from '../../../src/runtime/runtime.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import { type BenchContext, round, type Suite } from '../harness.ts';
import { alternate, pairedRatio, resultOf } from '../rounds.ts';

const MIB16 = (16 * 1024 * 1024) / 4;

// The transfer baseline's worker: on each buffer it receives, it checks one element, keeps the buffer
// in its free list (recycled mode), and sends the next hop's buffer, written whole.
const TRANSFER_WORKER = `
const { parentPort } = require('node:worker_threads');
parentPort.once('message', ({ port, n }) => {
  const free = [];
  const send = (hop, hops, mode, write) => {
    const data = mode === 'recycled' && free.length > 0 ? free.pop() : new Float32Array(n);
    if (write) data.fill(hop);
    port.postMessage({ hop, hops, mode, write, buffer: data.buffer }, [data.buffer]);
  };
  port.on('message', ({ hop, hops, mode, write, buffer }) => {
    const x = new Float32Array(buffer);
    if (write && x[n - 1] !== hop) throw new Error('hop ' + hop + ': found ' + x[n - 1]);
    if (mode === 'recycled') free.push(x);
    if (hop + 1 >= hops) parentPort.postMessage('done');
    else send(hop + 1, hops, mode, write);
  });
  parentPort.on('message', (m) => { if (m.go) send(0, m.hops, m.mode, m.write); });
});
`;

class TransferPair {
  private constructor(private readonly workers: Worker[]) {}

  static start(n: number): TransferPair {
    const { port1, port2 } = new MessageChannel();
    const workers = [0, 1].map(() => new Worker(TRANSFER_WORKER, { eval: true, execArgv: [] }));
    workers[0]!.postMessage({ port: port1, n }, [port1]);
    workers[1]!.postMessage({ port: port2, n }, [port2]);
    return new TransferPair(workers);
  }

  /** `hops` hops of one buffer between the two workers; resolves when the last one arrived. */
  round(mode: 'fresh' | 'recycled', write: boolean, hops: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        for (const w of this.workers) {
          w.off('message', done);
          w.off('error', reject);
        }
        resolve();
      };
      for (const w of this.workers) {
        w.on('message', done);
        w.on('error', reject);
      }
      this.workers[0]!.postMessage({ go: true, mode, write, hops });
    });
  }

  close(): Promise<number[]> {
    return Promise.all(this.workers.map((w) => w.terminate()));
  }
}

async function transfer(ctx: BenchContext): Promise<void> {
  const hops = 20;
  const pair = TransferPair.start(MIB16);
  try {
    for (const write of [true, false]) {
      const [fresh, recycled] = await alternate(
        [() => pair.round('fresh', write, hops), () => pair.round('recycled', write, hops)],
        7,
        2,
      );
      const perHop = (s: number[]) => s.map((ms) => ms / hops);
      for (const [name, samples] of [
        ['fresh', perHop(fresh!)],
        ['recycled', perHop(recycled!)],
      ] as const) {
        ctx.report(
          resultOf(ctx, `transfer-16mib-${name}${write ? '-written' : ''}`, samples, {
            ratio_fresh_vs_recycled: round(pairedRatio(fresh!, recycled!)),
          }),
        );
      }
    }
  } finally {
    await pair.close();
  }
}

const ROWS = 4096;
const COLS = 1024;

/** Two elementwise layers (one per stage) on [4096, 1024] float32: 16 MiB per activation. */
function wideElementwise(): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', ['B', COLS]);
  let h = x;
  for (let i = 0; i < 2; i++)
    h = b.tanh(
      b.add(
        b.mul(h, b.param(`s${i}`, [COLS], { init: { kind: 'normal', std: 1 } })),
        b.param(`b${i}`, [COLS], { init: { kind: 'normal', std: 0.1 } }),
      ),
    );
  b.output('loss', b.mean(b.square(h)));
  return b.build();
}

async function pipeline(ctx: BenchContext): Promise<void> {
  const graph = wideElementwise();
  const microbatches = 2;
  const feeds = { x: new Rng(4).normalTensor([ROWS * microbatches, COLS]) };
  const options = {
    workers: 2,
    schedule: '1f1b' as const,
    microbatches,
    params: initParams(graph, 1),
    optimizer: { name: 'sgd' as const, lr: 0.01, momentum: 0.9 },
  };
  const on = await createRuntime(graph, options);
  const big = await createRuntime(graph, { ...options, pool: { maxBytes: 2 ** 30 } });
  const off = await createRuntime(graph, { ...options, pool: false });
  try {
    // Each step transfers its own copy of the batch (the coordinator's shards are transferred).
    const step = (rt: Runtime) => () => rt.step(feeds);
    const [withPool, without, withBig] = await alternate([step(on), step(off), step(big)], 9, 2);
    const counters = async (rt: Runtime) => {
      const stats = await rt.stats();
      const sum = (k: 'poolHits' | 'poolMisses' | 'sentBytes' | 'pooledBytes') =>
        stats.reduce((n, h) => n + h[k], 0);
      return {
        pool_hits: sum('poolHits'),
        pool_misses: sum('poolMisses'),
        pooled_mib: round(sum('pooledBytes') / 2 ** 20),
        sent_mib_per_step: round(sum('sentBytes') / 2 ** 20),
      };
    };
    ctx.report(
      resultOf(ctx, 'pipeline-16mib-pool-1gib', withBig!, {
        ratio_off_vs_on: round(pairedRatio(without!, withBig!)),
        ...(await counters(big)),
      }),
    );
    const ratio = round(pairedRatio(without!, withPool!));
    ctx.report(
      resultOf(ctx, 'pipeline-16mib-pool', withPool!, { ratio_off_vs_on: ratio, ...(await counters(on)) }),
    );
    ctx.report(resultOf(ctx, 'pipeline-16mib-no-pool', without!, { ratio_off_vs_on: ratio }));
  } finally {
    await Promise.all([on.close(), off.close(), big.close()]);
  }
}

export const poolSuite: Suite = {
  name: 'pool',
  description:
    'tensor storage recycling on the workers: fresh vs recycled 16 MiB transfers, a pipeline with and without the pool',
  async run(ctx) {
    await transfer(ctx);
    await pipeline(ctx);
  },
};
