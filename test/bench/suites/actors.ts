/**
 * What the actor runtime costs (issue 3's benchmarks). The machine is shared: a case and its baseline
 * run in alternating rounds, and ratios are medians of per-round ratios (pairs timed back to back
 * share their noise).
 *
 * - `local-message`: ns per message between actors of one host (in-process, 1 worker, a 26k-node
 *   lane graph): the step's wall time over the host's local messages, the actors' work included.
 * - `cross-worker-message`: us per activation or gradient message between 2 worker threads (a lane
 *   graph of 256 lanes placed per node, so nearly every edge crosses), the step's wall time over its
 *   cross-worker messages; next to raw `postMessage` between two plain workers over a direct
 *   MessageChannel, passing as many messages of the same wire form (a header and a transferred
 *   f32[1,4]) in the same 256 lanes, one envelope per turn (`ratio_vs_raw`).
 * - `scaling`: 4 independent chains of 4 matmuls 512x512 on 1 and on 2 worker threads (`speedup`,
 *   target >= 1.8), next to what the machine gives 2 threads at that moment without the runtime: a
 *   scalar loop and the same matmuls in plain workers (`same_matmuls_speedup`).
 * - `overhead`: one MLP step (784-256-128-10, batch 128) on 1 worker thread against the reference
 *   engine's `valueAndGrad` in this thread (`ratio_vs_reference`, target <= 1.15), after 300 rounds
 *   of warm-up, in 16 alternating blocks of 25 steps each: the median of the blocks' ratios. The two
 *   share this thread's caches and collector; alternated step by step (`interleaved_ratio`, 40
 *   rounds) each step runs with the other's data evicted and the runtime's wait absorbs the
 *   reference's collections. Then `floor_*`: the reference's step on one plain worker thread, the feeds
 *   posted to it and the gradients back (engine-floor.ts), what any design with the step on a worker
 *   pays, in 16 blocks alternating with the runtime's (`ratio_vs_floor`); `floor_ratio_vs_reference`
 *   is the quotient of the two ratios.
 * - `large-graph`: the 1e6-node lane graph placed per node over 2 workers: start, first step (JIT
 *   warm-up) and one timed step, actor messages per second, local plus remote (target >=
 *   1,000,000/s). `start_ms` is the start from the sources under tsx, as the suite runs (the workers
 *   boot through tsx's loader too); `start_built_ms` the same start by the compiled package under
 *   plain node, as a user of the package gets it, in a child process (large-graph-start.ts). Last, so its garbage slows nothing after it. `--quick`: 1e5 nodes; `--large-graph`:
 *   this case alone; `--overhead`: the overhead case alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { valueAndGrad } from '../../../src/autodiff/engine.ts';
import type { TensorMap } from '../../../src/autodiff/forward.ts';
import { GraphBuilder } from '../../../src/graph/builder.ts';
import { laneGraph } from '../../../src/graph/generators.ts';
import type { Graph, Node } from '../../../src/graph/graph.ts';
import { initParams } from '../../../src/graph/params.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../../src/runtime/runtime.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import { tensor } from '../../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../../src/train/models.ts';
import { RawPingPong, startProbes } from '../baselines.ts';
import { buildInto, execFileAsync } from '../built.ts';
import { EngineFloor } from '../engine-floor.ts';
import { type BenchContext, type Figure, median, round, type Suite } from '../harness.ts';
import { alternate, alternateBlocks, pairedRatio, resultOf, time } from '../rounds.ts';
import { largeGraphSetup } from './large-graph-start.ts';

type Counter = 'localMessages' | 'remoteMessages' | 'tasks';

/** Messages and tasks of one step, from the hosts' counters around it. */
export async function countStep(runtime: Runtime, feeds: TensorMap): Promise<Record<Counter, number>> {
  const before = await runtime.stats();
  await runtime.step(feeds);
  const after = await runtime.stats();
  const count = (k: Counter) => after.reduce((s, h, w) => s + h[k] - before[w]![k], 0);
  return {
    localMessages: count('localMessages'),
    remoteMessages: count('remoteMessages'),
    tasks: count('tasks'),
  };
}

async function withRuntime<R>(
  graph: Graph,
  options: RuntimeOptions,
  body: (rt: Runtime) => Promise<R>,
): Promise<R> {
  const runtime = await createRuntime(graph, options);
  try {
    return await body(runtime);
  } finally {
    await runtime.close();
  }
}

export const laneFeeds = (lanes: number): TensorMap => ({ x: new Rng(2).uniformTensor([lanes, 4], -1, 1) });

async function localMessage(ctx: BenchContext): Promise<void> {
  const lanes = 64;
  const depth = 100;
  const graph = laneGraph(lanes, depth);
  const feeds = laneFeeds(lanes);
  const options: RuntimeOptions = { mode: 'in-process', workers: 1, params: initParams(graph, 1) };
  const { counts, samples } = await withRuntime(graph, options, async (rt) => ({
    counts: await countStep(rt, feeds),
    samples: await time(() => rt.step(feeds), 7, 2),
  }));
  const ms = median(samples);
  ctx.report(
    resultOf(ctx, 'local-message', samples, {
      nodes: graph.size,
      messages: counts.localMessages,
      tasks: counts.tasks,
      ns_per_message: round((ms * 1e6) / counts.localMessages, 1),
      ns_per_task: round((ms * 1e6) / counts.tasks, 1),
    }),
  );
}

async function crossWorkerMessage(ctx: BenchContext): Promise<void> {
  const lanes = 256;
  const depth = 12;
  const graph = laneGraph(lanes, depth);
  const feeds = laneFeeds(lanes);
  const options: RuntimeOptions = { workers: 2, placement: 'per-node', params: initParams(graph, 1) };
  const { ours, raw, counts, hops } = await withRuntime(graph, options, async (rt) => {
    const counts = await countStep(rt, feeds);
    // The same lanes passing as many messages, without the runtime.
    const hops = Math.max(1, Math.round(counts.remoteMessages / lanes));
    const pingPong = RawPingPong.start(lanes, hops);
    try {
      const [ours, raw] = await alternate([() => rt.step(feeds), () => pingPong.round()], 9, 2);
      return { ours: ours!, raw: raw!, counts, hops };
    } finally {
      await pingPong.close();
    }
  });
  const perMessage = (ms: number) => (ms * 1e3) / counts.remoteMessages;
  const rawPerMessage = (ms: number) => (ms * 1e3) / (lanes * hops);
  ctx.report(
    resultOf(ctx, 'cross-worker-message', ours, {
      nodes: graph.size,
      lanes,
      remote_messages: counts.remoteMessages,
      local_messages: counts.localMessages,
      us_per_message: round(perMessage(median(ours)), 3),
      raw_median_ms: round(median(raw)),
      raw_min_ms: round(Math.min(...raw)),
      raw_max_ms: round(Math.max(...raw)),
      raw_messages: lanes * hops,
      raw_us_per_message: round(rawPerMessage(median(raw)), 3),
      ratio_vs_raw: round(pairedRatio(ours.map(perMessage), raw.map(rawPerMessage)), 2),
    }),
  );
}

/** `chains` independent chains of `length` matmuls over f32[size, size]; chain c on stage c * stages / chains. */
function matmulChains(chains: number, length: number, size: number, stages: number): Graph {
  const b = new GraphBuilder();
  const ends: Node[] = [];
  for (let c = 0; c < chains; c++) {
    ends.push(
      b.onStage(Math.floor((c * stages) / chains), () => {
        let h: Node = b.input(`x${c}`, [size, size]);
        for (let k = 0; k < length; k++) {
          const w = b.param(`w${c}_${k}`, [size, size], {
            init: { kind: 'normal', std: 1 / Math.sqrt(size) },
          });
          h = b.matmul(h, w);
        }
        return b.mean(h);
      }),
    );
  }
  b.output(
    'loss',
    ends.reduce((s, e) => b.add(s, e)),
  );
  return b.build();
}

async function scaling(ctx: BenchContext): Promise<void> {
  const chains = 4;
  const length = 4;
  const size = 512;
  const rng = new Rng(3);
  const feeds = Object.fromEntries(
    Array.from({ length: chains }, (_, c) => [`x${c}`, rng.normalTensor([size, size])]),
  );
  // One worker: everything on it; two: chains 0-1 on worker 0 and 2-3 on worker 1 (the annotations).
  const start = (workers: number) => {
    const graph = matmulChains(chains, length, size, workers);
    const placement = workers === 1 ? 'stages' : 'manual';
    return createRuntime(graph, { workers, placement, params: initParams(graph, 1) });
  };
  const [one, two] = await Promise.all([start(1), start(2)]);
  const probes = await startProbes();
  let t: number[][];
  try {
    t = await alternate(
      [
        () => one.step(feeds),
        () => two.step(feeds),
        () => probes.run('scalar', 1),
        () => probes.run('scalar', 2),
        () => probes.run('matmul', 1),
        () => probes.run('matmul', 2),
      ],
      6,
      1,
    );
  } finally {
    await Promise.all([one.close(), two.close(), probes.close()]);
  }
  const [oneMs, twoMs, scalarOne, scalarTwo, matmulOne, matmulTwo] = t as [
    number[],
    number[],
    number[],
    number[],
    number[],
    number[],
  ];
  const speedup = pairedRatio(oneMs, twoMs);
  // Two probes do twice the work of one.
  const double = (xs: number[]) => xs.map((x) => 2 * x);
  const cpu = pairedRatio(double(scalarOne), scalarTwo);
  const kernel = pairedRatio(double(matmulOne), matmulTwo);
  const gflop = gflopsOf(chains, length, size);
  ctx.report(
    resultOf(ctx, 'scaling', twoMs, {
      chains,
      matmuls_per_chain: length,
      size,
      gflop_per_step: round(gflop, 2),
      one_worker_median_ms: round(median(oneMs)),
      one_worker_min_ms: round(Math.min(...oneMs)),
      one_worker_max_ms: round(Math.max(...oneMs)),
      gflops_1w: round(gflop / (median(oneMs) / 1000), 2),
      gflops_2w: round(gflop / (median(twoMs) / 1000), 2),
      speedup: round(speedup, 2),
      scalar_loop_speedup: round(cpu, 2),
      same_matmuls_speedup: round(kernel, 2),
      ratio_vs_same_matmuls: round(speedup / kernel, 2),
      target: 1.8,
      meets_target: speedup >= 1.8,
    }),
  );
}

/** Forward plus backward FLOPs of the chains: the first matmul of a chain needs only its weight's gradient. */
function gflopsOf(chains: number, length: number, size: number): number {
  const mm = 2 * size ** 3;
  return (chains * (length + 2 * length - 1) * mm) / 1e9;
}

/** The overhead case's blocks (see the header): how many, steps in each, and rounds of warm-up first. */
const OVERHEAD_BLOCKS = 16;
const STEPS_PER_BLOCK = 25;
const OVERHEAD_WARMUP = 300;

async function overhead(ctx: BenchContext): Promise<void> {
  const batch = 128;
  const mlp = { features: 784, hidden: [256, 128], classes: 10 };
  const graph = mlpClassifier(mlp);
  const params = initParams(graph, 1);
  const rng = new Rng(4);
  const feeds = {
    x: rng.uniformTensor([batch, mlp.features], 0, 1),
    y: tensor(Array.from({ length: batch }, () => rng.int(10))),
  };
  const reference = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} });
  const floor = await EngineFloor.start({ ...mlp, seed: 1 });
  // Alternating blocks, per-block ratios: a burst of load on the shared machine hits both alike.
  const { blocks, interleaved, floors } = await withRuntime(graph, { workers: 1, params }, async (rt) => {
    const fns = [() => rt.step(feeds), () => reference(feeds, params)];
    const blocks = await alternateBlocks(fns, OVERHEAD_BLOCKS, STEPS_PER_BLOCK, OVERHEAD_WARMUP);
    const interleaved = await alternate(fns, 40, 0);
    // Blocks of their own: the floor's gradients, arriving in this thread, bring on collections that
    // would land in the reference's blocks (the runtime's do too, and it pairs with the floor).
    const floors = await alternateBlocks(
      [fns[0]!, () => floor.step(feeds)],
      OVERHEAD_BLOCKS,
      STEPS_PER_BLOCK,
      OVERHEAD_WARMUP / 3,
    );
    return { blocks, interleaved, floors };
  }).finally(() => floor.close());
  const [ours, refs] = blocks as [number[], number[]];
  const [oursOne, refsOne] = interleaved as [number[], number[]];
  const [oursByFloor, floorMs] = floors as [number[], number[]];
  const ratio = pairedRatio(ours, refs);
  const ratios = ours.map((x, i) => x / refs[i]!);
  const overFloor = pairedRatio(oursByFloor, floorMs);
  ctx.report(
    resultOf(ctx, 'overhead', ours, {
      model: 'mlp 784-256-128-10',
      batch,
      steps_per_block: STEPS_PER_BLOCK,
      reference_median_ms: round(median(refs)),
      reference_min_ms: round(Math.min(...refs)),
      reference_max_ms: round(Math.max(...refs)),
      interleaved_median_ms: round(median(oursOne)),
      interleaved_reference_median_ms: round(median(refsOne)),
      interleaved_ratio: round(pairedRatio(oursOne, refsOne), 3),
      ratio_vs_reference: round(ratio, 3),
      ratio_min: round(Math.min(...ratios), 3),
      ratio_max: round(Math.max(...ratios), 3),
      floor_median_ms: round(median(floorMs)),
      ratio_vs_floor: round(overFloor, 3),
      // The floor against the reference, through the runtime's step that both blocks share.
      floor_ratio_vs_reference: round(ratio / overFloor, 3),
      target: 1.15,
      meets_target: ratio <= 1.15,
    }),
  );
}

async function largeGraph(ctx: BenchContext): Promise<void> {
  const target = ctx.flags.has('quick') ? 1e5 : 1e6;
  const t0 = performance.now();
  const { lanes, graph, options } = largeGraphSetup(target);
  const buildMs = performance.now() - t0;
  const feeds = laneFeeds(lanes);
  const t1 = performance.now();
  const runtime = await createRuntime(graph, options);
  const startMs = performance.now() - t1;
  let figures: Record<string, Figure>;
  let samples: number[];
  try {
    // The first step warms up both workers' JIT and counts the messages; then one timed step (each
    // takes many seconds: the whole suite should stay within a minute or two).
    const t2 = performance.now();
    const first = await countStep(runtime, feeds);
    const firstMs = performance.now() - t2;
    samples = await time(() => runtime.step(feeds), 1, 0);
    const rate = (first.localMessages + first.remoteMessages) / (median(samples) / 1000);
    figures = {
      nodes: graph.size,
      build_ms: round(buildMs),
      start_ms: round(startMs),
      first_step_ms: round(firstMs),
      tasks: first.tasks,
      local_messages: first.localMessages,
      remote_messages: first.remoteMessages,
      messages_per_s: Math.round(rate),
      target_messages_per_s: 1_000_000,
      meets_target: rate >= 1_000_000,
    };
  } finally {
    await runtime.close();
  }
  // The same start under the built package, in a child of its own (after this one's runtime is closed).
  figures.start_built_ms = round(await builtStart(target));
  ctx.report(resultOf(ctx, 'large-graph', samples, figures));
}

/** `start_ms` of the large-graph case run by the compiled package under plain node, in a child process. */
async function builtStart(target: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'backflow-bench-actors-'));
  try {
    const out = await buildInto(dir, ['test/bench/suites/large-graph-start.ts', 'workers/host.worker.ts']);
    const file = join(out, 'test', 'bench', 'suites', 'large-graph-start.js');
    const { stdout } = await execFileAsync(process.execPath, [file, String(target)], { maxBuffer: 1 << 20 });
    return (JSON.parse(stdout.trim().split('\n').pop()!) as { start_ms: number }).start_ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const actorsSuite: Suite = {
  name: 'actors',
  description:
    'actor runtime: local and cross-worker messages (vs raw postMessage), scaling on 2 workers, overhead vs the reference engine, the 1e6-node graph',
  flags: {
    quick: 'large-graph on 1e5 nodes instead of 1e6',
    'large-graph': 'only the large-graph case',
    overhead: 'only the overhead case',
    projection:
      "the large graph's messages/s on 2-32 workers according to the simulator, calibrated on 1 and 2 workers (test/bench/message-projection.ts)",
  },
  async run(ctx) {
    if (ctx.flags.has('projection')) {
      const { messageProjection } = await import('../message-projection.ts');
      await messageProjection(ctx);
      return;
    }
    if (ctx.flags.has('large-graph')) {
      await largeGraph(ctx);
      return;
    }
    if (ctx.flags.has('overhead')) {
      await overhead(ctx);
      return;
    }
    await localMessage(ctx);
    await crossWorkerMessage(ctx);
    await scaling(ctx);
    await overhead(ctx);
    await largeGraph(ctx);
  },
};
