/**
 * Hosts on node processes (Note [rendezvous] in src/runtime/rendezvous.ts) against the same work on
 * worker threads, and their data paths against a raw TCP socket, all in one run: every figure is a
 * ratio to a baseline timed in the same rounds, the case and its baselines in turn (a burst of load
 * on the shared machine hits them alike).
 *
 * The suite starts its own nats-server and four node processes of one host each: two in a cluster
 * whose runtimes carry data over direct TCP links, two in one that carries it over NATS subjects. A
 * node serves one runtime at a time, so this way a TCP and a NATS runtime are up together and can take
 * turns. It stops them all at the end, also on error. Without nats-server it reports one `skipped`
 * line. Every line carries `load_1m`, the machine's load average when it was reported.
 *
 * - `message`: the lane graph of the `actors` suite's `cross-worker-message` (256 lanes, depth 12,
 *   placed per node, so nearly every edge crosses) on two node processes (data over TCP): actor
 *   messages per second, local plus remote, over the median step; against two worker threads on the
 *   same graph and placement (`ratio_vs_threads`, the median of per-round ratios).
 * - `bandwidth-tcp`, `bandwidth-nats`: a graph whose only cross-worker edge carries a 16 MiB tensor
 *   (a [4096, 1024] float32 parameter of stage 0, read by stage 1, which keeps one element of it; only
 *   a scalar of stage 1 is differentiated, so nothing crosses back and nothing is computed on 16 MiB):
 *   MB/s (10^6 bytes) of the bytes the hosts count as sent between them, over the step. Against two
 *   plain Node processes passing 16 MiB messages over a loopback TCP socket, counting bytes without
 *   copying them (`ratio_vs_tcp`, per-round ratios; target at least 0.8 for the TCP data path).
 * - `train-tcp`, `train-nats`: the `train` suite's MNIST MLP (784-256-128-10, batch 128, SGD),
 *   samples/s with 2 node processes data-parallel (2 workers, 2 replicas), against 2 worker threads
 *   data-parallel (`ratio_vs_threads`, target at least 0.7 for TCP) and 1 worker thread (`ratio_vs_1`);
 *   the four engines in rounds of 50 steps as in the `train` suite (1 untimed round, then 3).
 */
import { loadavg } from 'node:os';
import { GraphBuilder } from '../../../src/graph/builder.ts';
import { laneGraph } from '../../../src/graph/generators.ts';
import type { Graph } from '../../../src/graph/graph.ts';
import { initParams } from '../../../src/graph/params.ts';
import type { NatsClusterOptions } from '../../../src/runtime/rendezvous.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../../src/runtime/runtime.ts';
import { natsServerInstalled, startNatsServer } from '../../support/nats-server.ts';
import { spawnNode, stopAll } from '../../support/node-processes.ts';
import { RawTcpPair } from '../baselines.ts';
import { type BenchContext, type BenchResult, type Figure, median, round, type Suite } from '../harness.ts';
import { alternate, pairedRatio, resultOf } from '../rounds.ts';
import { countStep, laneFeeds } from './actors.ts';
import { BATCH, type Batch, backflow, type Engine, mnistBatches } from './train.ts';

type Data = 'tcp' | 'nats';

/** The cluster option of a runtime on this suite's two node processes for `data`. */
type Nodes = (data: Data) => NatsClusterOptions;

/** Runs `body` with a nats-server and two node processes per data path; stops them all after. */
async function withNodes(body: (nodes: Nodes) => Promise<void>): Promise<void> {
  const server = await startNatsServer();
  try {
    const name = (data: Data) => `bench-${data}-${process.pid}`;
    await Promise.all(
      (['tcp', 'nats'] as const).flatMap((data) =>
        ['a', 'b'].map((n) =>
          spawnNode({ nats: { servers: server.url }, cluster: name(data), name: `${data}-${n}` }),
        ),
      ),
    );
    await body((data) => ({ nats: server.url, name: name(data), nodes: 2, data }));
  } finally {
    await stopAll();
    await server.stop();
  }
}

/** Runtimes of `graph` with each of `options`, started one after another and all closed after `body`. */
async function withRuntimes<R>(
  graph: Graph,
  options: readonly RuntimeOptions[],
  body: (runtimes: Runtime[]) => Promise<R>,
): Promise<R> {
  const runtimes: Runtime[] = [];
  try {
    for (const o of options) runtimes.push(await createRuntime(graph, o));
    return await body(runtimes);
  } finally {
    await Promise.all(runtimes.map((rt) => rt.close()));
  }
}

/** A result line with the machine's load average at the time it is reported. */
function line(ctx: BenchContext, name: string, samples: readonly number[], figures: Record<string, Figure>) {
  return resultOf(ctx, name, samples, { ...figures, load_1m: round(loadavg()[0]!, 2) });
}

/** `<prefix>_median_ms`, `_min_ms` and `_max_ms` of a baseline's samples. */
function timings(prefix: string, samples: readonly number[]): Record<string, number> {
  return {
    [`${prefix}_median_ms`]: round(median(samples)),
    [`${prefix}_min_ms`]: round(Math.min(...samples)),
    [`${prefix}_max_ms`]: round(Math.max(...samples)),
  };
}

async function message(ctx: BenchContext, nodes: Nodes): Promise<void> {
  const lanes = 256;
  const graph = laneGraph(lanes, 12);
  const feeds = laneFeeds(lanes);
  const options: RuntimeOptions = { workers: 2, placement: 'per-node', params: initParams(graph, 1) };
  await withRuntimes(
    graph,
    [{ ...options, cluster: nodes('tcp') }, options],
    async ([onNodes, onThreads]) => {
      const counts = await countStep(onNodes!, feeds);
      const [ours, threads] = (await alternate(
        [() => onNodes!.step(feeds), () => onThreads!.step(feeds)],
        9,
        2,
      )) as [number[], number[]];
      const messages = counts.localMessages + counts.remoteMessages;
      const rate = (ms: number) => Math.round(messages / (ms / 1000));
      ctx.report(
        line(ctx, 'message', ours, {
          data: 'tcp',
          nodes: graph.size,
          lanes,
          local_messages: counts.localMessages,
          remote_messages: counts.remoteMessages,
          messages_per_s: rate(median(ours)),
          remote_messages_per_s: Math.round(counts.remoteMessages / (median(ours) / 1000)),
          ...timings('threads', threads),
          threads_messages_per_s: rate(median(threads)),
          ratio_vs_threads: round(pairedRatio(threads, ours), 2),
        }),
      );
    },
  );
}

const ROWS = 4096;
const COLS = 1024;
const TENSOR_BYTES = ROWS * COLS * 4;

/** Stage 0 holds a 16 MiB parameter that stage 1 reads; only stage 1's scalar is differentiated. */
function bandwidthGraph(): Graph {
  const b = new GraphBuilder();
  const big = b.onStage(0, () => b.param('big', [ROWS, COLS], { init: { kind: 'normal', std: 1 } }));
  b.onStage(1, () => {
    const scale = b.param('scale', [], { init: { kind: 'normal', std: 1 } });
    b.output('loss', b.mul(b.sum(b.slice(big, [0, 0], [1, 1])), scale));
  });
  return b.build();
}

async function bandwidth(ctx: BenchContext, nodes: Nodes): Promise<void> {
  const graph = bandwidthGraph();
  const options: RuntimeOptions = {
    workers: 2,
    placement: 'manual',
    wrt: ['scale'],
    params: initParams(graph, 1),
  };
  const datas = ['tcp', 'nats'] as const;
  const raw = await RawTcpPair.start(TENSOR_BYTES);
  try {
    await withRuntimes(
      graph,
      datas.map((data) => ({ ...options, cluster: nodes(data) })),
      async (runtimes) => {
        // What crosses in a step, as the hosts count it: the tensor, once.
        const sent = await Promise.all(
          runtimes.map(async (rt) => {
            await rt.step({});
            return (await rt.stats()).reduce((s, h) => s + h.sentBytes, 0);
          }),
        );
        const samples = await alternate(
          [...runtimes.map((rt) => () => rt.step({})), () => raw.round(1)],
          12,
          2,
        );
        const rawMs = samples[datas.length]!;
        const mbPerS = (bytes: number) => (ms: number) => bytes / 1e6 / (ms / 1000);
        const rawRate = mbPerS(TENSOR_BYTES);
        for (const [i, data] of datas.entries()) {
          const ours = samples[i]!;
          const rate = mbPerS(sent[i]!);
          const ratio = pairedRatio(ours.map(rate), rawMs.map(rawRate));
          ctx.report(
            line(ctx, `bandwidth-${data}`, ours, {
              data,
              tensor_bytes: TENSOR_BYTES,
              sent_bytes_per_step: sent[i]!,
              mb_per_s: round(rate(median(ours)), 1),
              ...timings('raw_tcp', rawMs),
              raw_tcp_mb_per_s: round(rawRate(median(rawMs)), 1),
              ratio_vs_tcp: round(ratio, 2),
              ...(data === 'tcp' ? { target: 0.8, meets_target: ratio >= 0.8 } : {}),
            }),
          );
        }
      },
    );
  } finally {
    await raw.close();
  }
}

/** Steps per engine per round, timed rounds, and untimed rounds first (as in the `train` suite). */
const ROUND = 50;
const ROUNDS = 3;
const WARMUP_ROUNDS = 1;

async function train(ctx: BenchContext, nodes: Nodes): Promise<void> {
  const batches = mnistBatches(16);
  const dataParallel = { workers: 2, replicas: 2 };
  const engines: Engine[] = [];
  try {
    engines.push(await backflow('train-tcp', { ...dataParallel, cluster: nodes('tcp') }));
    engines.push(await backflow('train-nats', { ...dataParallel, cluster: nodes('nats') }));
    engines.push(await backflow('2-threads', dataParallel));
    engines.push(await backflow('1-thread', { workers: 1 }));
    const samples = await rounds(engines, batches);
    const rate = (ms: readonly number[]) => BATCH / (median(ms) / 1000);
    const [threads, one] = [samples[2]!, samples[3]!];
    for (const [i, data] of (['tcp', 'nats'] as const).entries()) {
      const ours = samples[i]!;
      const ratio = rate(ours) / rate(threads);
      ctx.report(
        line(ctx, `train-${data}`, ours, {
          data,
          batch: BATCH,
          workers: 2,
          replicas: 2,
          samples_per_s: Math.round(rate(ours)),
          ...timings('threads', threads),
          threads_samples_per_s: Math.round(rate(threads)),
          ...timings('one_thread', one),
          one_thread_samples_per_s: Math.round(rate(one)),
          ratio_vs_threads: round(ratio, 2),
          ratio_vs_1: round(rate(ours) / rate(one), 2),
          ...(data === 'tcp' ? { target: 0.7, meets_target: ratio >= 0.7 } : {}),
        }),
      );
    }
  } finally {
    await Promise.all(engines.map((e) => e.close()));
  }
}

/** Rounds of ROUND steps of each engine in turn; each engine's step times of the timed rounds. */
async function rounds(engines: readonly Engine[], batches: readonly Batch[]): Promise<number[][]> {
  const samples = engines.map(() => [] as number[]);
  for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
    for (const [e, engine] of engines.entries()) {
      for (let i = 0; i < ROUND; i++) {
        const t = performance.now();
        await engine.step(batches[(r * ROUND + i) % batches.length]!);
        if (r >= WARMUP_ROUNDS) samples[e]!.push(performance.now() - t);
      }
    }
  }
  return samples;
}

function skipped(ctx: BenchContext, reason: string): BenchResult {
  return {
    suite: ctx.suite,
    case: 'skipped',
    median_ms: 0,
    min_ms: 0,
    max_ms: 0,
    runs: 0,
    skipped: true,
    reason,
  };
}

export const clusterSuite: Suite = {
  name: 'cluster',
  description:
    'node processes through NATS: actor messages/s vs 2 threads, 16 MiB tensors over TCP and NATS vs a raw TCP socket, MNIST data-parallel vs threads',
  async run(ctx) {
    if (!natsServerInstalled()) {
      ctx.report(skipped(ctx, 'nats-server is not installed (not found on PATH)'));
      return;
    }
    await withNodes(async (nodes) => {
      await message(ctx, nodes);
      await bandwidth(ctx, nodes);
      await train(ctx, nodes);
    });
  },
};
