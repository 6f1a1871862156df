/**
 * Build, forward and backward of generated graphs of 1e4, 1e5 and 1e6 nodes: elementwise chains over
 * f32[4] with fan-out, shared sub-expressions and skip connections, a parameter every 1000 levels,
 * ending in a scalar sum (see `chainGraph`). The target: 1e6 nodes built, evaluated and differentiated
 * in under 1 s with under 1.5 GB peak RSS, and a flat time per node.
 *
 * Each size runs in its own child process (this file, run directly), so peak RSS is per size and one
 * size's garbage never slows the next. Figures: `build_ms` (the builder), `forward_ms` (evaluate
 * of the loss alone), `backward_ms` (valueAndGrad minus that forward: planning and the reverse
 * sweep), `total_ms` (build + valueAndGrad, which includes its own forward), `ns_per_node` of the
 * total; `check_ms` (checkGraph, which must stay linear: `check_ns_per_node` flat over the sizes) and
 * `serialize_roundtrip_ms` (serializeGraph then deserializeGraph: `serialize_ms`, `deserialize_ms`) and
 * `grad_graph_ms` (gradGraph: the gradient as a graph), outside the total, timed after the
 * engine's runs so that their garbage is not collected in them (`peak_rss_mb` is the engine's,
 * `peak_rss_with_checks_mb` the child's at the end). `cpu_ms` is the CPU time of the total: on a
 * shared machine it moves less with the load than the wall time does. `minor_faults` are the fresh
 * pages the total touched; `faults_ms` what they cost at the price of a fresh page measured in the
 * child (`fresh_page_us`, machine.ts), and `total_less_faults_ms` the total without that cost: an
 * estimate of the total where a fresh page is nearly free (an upper bound on the saving, since a
 * fault taken by a collector thread may overlap the main thread's work).
 *
 * Last, `engine call pool` (Note [call storages]): the MNIST MLP's `valueAndGrad` (784-256-128-10,
 * batch 128) in this thread, with the main thread's call pool and without it (`minBytes` past any
 * size), in alternating blocks: `median_ms` with it, `no_pool_median_ms` without, `speedup` the median
 * of the blocks' paired ratios, and the minor faults a call of each.
 *
 * Two cases per size. `built` is what a user of the package runs: this file and the sources it
 * imports compiled by tsc with tsconfig.build.json (the package's build) into a temporary directory,
 * and the child run by plain node. `tsx` is the sources as the tests and examples run them, through
 * tsx's loader, which costs more per call (its keep-names transform wraps every closure a hot
 * function creates in a call that defines the closure's name); it times the total only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { configureCallPool } from '../../../src/autodiff/call-pool.ts';
import { evaluate, valueAndGrad } from '../../../src/autodiff/engine.ts';
import { gradGraph } from '../../../src/autodiff/grad-graph.ts';
import { GraphBuilder } from '../../../src/graph/builder.ts';
import { checkGraph } from '../../../src/graph/check.ts';
import type { Graph, Node } from '../../../src/graph/graph.ts';
import { initParams } from '../../../src/graph/params.ts';
import { deserializeGraph, serializeGraph } from '../../../src/graph/serialize.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import { tensor } from '../../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../../src/train/models.ts';
import { buildInto, execFileAsync } from '../built.ts';
import { type BenchContext, type BenchResult, median, peakRssMb, round, type Suite } from '../harness.ts';
import { freshPageUs } from '../machine.ts';
import { pairedRatio, resultOf } from '../rounds.ts';

const LEVEL_NODES = 7;
const PARAM_EVERY = 1000;

/**
 * The generated graph: per level, t = tanh(a); u = t * a; v = u + t; a' = (v - 0.5 p) + 0.5 with p
 * the level before, and a running sum s' = s + a' that the loss reads (so every level's gradient is
 * of order 1: the chain alone damps it to denormals within a few hundred levels). a feeds tanh, mul,
 * the next level's skip and the sum; t is shared; the scalar 0.5 is one node read by every level.
 * The values settle near 3. A parameter is added into the chain every PARAM_EVERY levels. About
 * `target` nodes in all.
 */
export function chainGraph(target: number): Graph {
  const b = new GraphBuilder();
  const half = b.constant(0.5, 'float32');
  let a: Node = b.param('w0', [4], { init: { kind: 'uniform', low: -1, high: 1 } });
  let p = a;
  let s = a;
  let level = 0;
  while (b.size + LEVEL_NODES + 1 < target) {
    if (level > 0 && level % PARAM_EVERY === 0) {
      const w = b.param(`w${level / PARAM_EVERY}`, [4], { init: { kind: 'uniform', low: -1, high: 1 } });
      a = b.add(a, w);
    }
    const t = b.tanh(a);
    const next = b.add(b.sub(b.add(b.mul(t, a), t), b.mul(p, half)), half);
    s = b.add(s, next);
    p = a;
    a = next;
    level++;
  }
  b.output('loss', b.sum(s));
  return b.build();
}

interface RunTimes {
  nodes: number;
  build: number;
  forward: number;
  vag: number;
  loss: number;
  /** CPU time (user + system, every thread: the collector's helpers too) of build and valueAndGrad. */
  cpu: number;
  /** Minor page faults of the process (every thread) during build and valueAndGrad: fresh pages touched. */
  faults: number;
}

function runOnce(target: number): RunTimes {
  const f0 = process.resourceUsage().minorPageFault;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const graph = chainGraph(target);
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const params = initParams(graph, 1);
  const t2 = performance.now();
  const loss = evaluate(graph, {}, params, ['loss'])['loss']!.item();
  const t3 = performance.now();
  const c3 = process.cpuUsage();
  const result = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} })({}, params);
  const t4 = performance.now();
  const c4 = process.cpuUsage(c3);
  const f4 = process.resourceUsage().minorPageFault;
  if (!Number.isFinite(result.value.item()) || result.value.item() !== loss)
    throw new Error(`graph bench: loss ${result.value.item()} vs ${loss}`);
  return {
    nodes: graph.size,
    build: t1 - t0,
    forward: t3 - t2,
    vag: t4 - t3,
    loss,
    cpu: (c1.user + c1.system + c4.user + c4.system) / 1000,
    // The evaluate between the two is outside the total, but its faults are few (values it makes are
    // the size of the ones valueAndGrad makes, and those pages are reused).
    faults: f4 - f0,
  };
}

/**
 * checkGraph of a graph, serializeGraph then deserializeGraph (which checks it again), and gradGraph
 * (the gradient as a graph, built).
 */
interface CheckTimes {
  check: number;
  serialize: number;
  deserialize: number;
  grad: number;
}

function checkOnce(graph: Graph): CheckTimes {
  const t0 = performance.now();
  checkGraph(graph);
  const t1 = performance.now();
  const bytes = serializeGraph(graph);
  const t2 = performance.now();
  if (deserializeGraph(bytes).size !== graph.size) throw new Error('graph bench: round trip');
  const t3 = performance.now();
  if (gradGraph(graph, { loss: 'loss' }).size <= graph.size) throw new Error('graph bench: gradGraph');
  const t4 = performance.now();
  return { check: t1 - t0, serialize: t2 - t1, deserialize: t3 - t2, grad: t4 - t3 };
}

/**
 * The child: warm the JIT on small graphs, then time `runs` runs of one size; prints one JSON line.
 * Peak RSS is taken after the first timed run: later runs start while the garbage of the one before
 * is still uncollected, which measures the collector's laziness rather than the engine. `full`: then
 * `runs` checks and round trips of one graph of that size, after the engine's runs, so that neither
 * their garbage nor their memory is counted against the engine.
 */
function child(target: number, runs: number, full: boolean): void {
  for (let i = 0; i < 5; i++) runOnce(20_000);
  // Before the timed runs: after them the kernel is still taking back their memory, and a probe then
  // measured up to twice as much.
  const pageUs = median(Array.from({ length: 5 }, freshPageUs));
  // No forced GC between runs: a full collection shrinks the young generation, and the next run
  // (at 1e4 nodes, several times) pays for growing it again.
  const samples: RunTimes[] = [runOnce(target)];
  const rss = peakRssMb();
  for (let i = 1; i < runs; i++) samples.push(runOnce(target));
  const rssAll = peakRssMb();
  const checks: CheckTimes[] = [];
  if (full) {
    for (let i = 0; i < 3; i++) checkOnce(chainGraph(20_000));
    const graph = chainGraph(target);
    for (let i = 0; i < runs; i++) checks.push(checkOnce(graph));
  }
  const rssChecks = peakRssMb();
  const result: ChildResult = {
    samples,
    fresh_page_us: pageUs,
    checks,
    peak_rss_mb: rss,
    peak_rss_all_runs_mb: rssAll,
    peak_rss_with_checks_mb: rssChecks,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

const SIZES: readonly (readonly [number, number])[] = [
  [1e4, 30],
  [1e5, 10],
  [1e6, 5],
];

interface ChildResult {
  samples: RunTimes[];
  /** What touching a fresh page costs in the child (machine.ts). */
  fresh_page_us: number;
  checks: CheckTimes[];
  peak_rss_mb: number;
  peak_rss_all_runs_mb: number;
  /** After the checks and round trips too. */
  peak_rss_with_checks_mb: number;
}

/** How a child runs: the compiled file under plain node, or this file under this process's tsx. */
type Mode = { kind: 'built'; file: string } | { kind: 'tsx' };

async function spawnChild(mode: Mode, target: number, runs: number): Promise<ChildResult> {
  const args =
    mode.kind === 'built'
      ? [mode.file, String(target), String(runs), 'full']
      : [...process.execArgv, fileURLToPath(import.meta.url), String(target), String(runs), 'total'];
  try {
    const { stdout } = await execFileAsync(process.execPath, args, { maxBuffer: 1 << 24 });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(`graph bench child (${mode.kind}, ${target} nodes) failed: ${stderr || message}`);
  }
}

/**
 * Compiles this file, and with it every source it imports, as `npm run build` compiles the package
 * (tsconfig.build.json; no declarations, no type check) into a temporary directory `dir`; returns the
 * compiled file. The output resolves its dependencies through a link to this checkout's node_modules.
 */
async function buildChild(dir: string): Promise<string> {
  const out = await buildInto(dir, ['test/bench/suites/graph.ts']);
  return join(out, 'test', 'bench', 'suites', 'graph.js');
}

/** One result line: the medians of a child's samples (the checks and round trip when it timed them). */
function report(ctx: BenchContext, name: string, child: ChildResult, full: boolean): BenchResult {
  const { samples } = child;
  const total = samples.map((s) => s.build + s.vag);
  const med = (f: (s: RunTimes) => number) => round(median(samples.map(f)));
  const nodes = samples[0]!.nodes;
  const check = round(median(child.checks.map((c) => c.check)));
  const checks = {
    check_ms: check,
    serialize_roundtrip_ms: round(median(child.checks.map((c) => c.serialize + c.deserialize))),
    serialize_ms: round(median(child.checks.map((c) => c.serialize))),
    deserialize_ms: round(median(child.checks.map((c) => c.deserialize))),
    grad_graph_ms: round(median(child.checks.map((c) => c.grad))),
    check_ns_per_node: round((check * 1e6) / nodes, 1),
    peak_rss_with_checks_mb: round(child.peak_rss_with_checks_mb, 1),
  };
  return {
    suite: ctx.suite,
    case: name,
    median_ms: round(median(total)),
    min_ms: round(Math.min(...total)),
    max_ms: round(Math.max(...total)),
    runs: samples.length,
    nodes,
    build_ms: med((s) => s.build),
    forward_ms: med((s) => s.forward),
    backward_ms: med((s) => s.vag - s.forward),
    total_ms: round(median(total)),
    ns_per_node: round((median(total) * 1e6) / nodes, 1),
    cpu_ms: med((s) => s.cpu),
    ...faultFigures(samples, child.fresh_page_us),
    peak_rss_mb: round(child.peak_rss_mb, 1),
    peak_rss_all_runs_mb: round(child.peak_rss_all_runs_mb, 1),
    ...(full ? checks : {}),
  };
}

/**
 * The page faults of the total and what they cost at the child's measured price of a fresh page:
 * `total_less_faults_ms` is the total with that cost taken out, an estimate of the total on a machine
 * where a fresh page is nearly free (bare metal; on the VMs measured here a fault costs 10-15 us).
 */
function faultFigures(samples: readonly RunTimes[], pageUs: number): Record<string, number> {
  const faults = median(samples.map((s) => s.faults));
  return {
    minor_faults: faults,
    fresh_page_us: round(pageUs, 2),
    faults_ms: round((faults * pageUs) / 1000),
    total_less_faults_ms: round(median(samples.map((s) => s.build + s.vag - (s.faults * pageUs) / 1000))),
  };
}

export const graphSuite: Suite = {
  name: 'graph',
  description:
    'build + forward + backward of 1e4/1e5/1e6-node elementwise graphs (f32[4]), per child process, built and under tsx; the engine call pool on the MNIST MLP',
  flags: { small: 'only 1e4 and 1e5 nodes' },
  async run(ctx) {
    const sizes = ctx.flags.has('small') ? SIZES.slice(0, 2) : SIZES;
    const dir = mkdtempSync(join(tmpdir(), 'backflow-bench-graph-'));
    try {
      const modes: Mode[] = [{ kind: 'built', file: await buildChild(dir) }, { kind: 'tsx' }];
      for (const [target, runs] of sizes) {
        for (const mode of modes) {
          const child = await spawnChild(mode, target, runs);
          const name = `chain ${target.toExponential(0)} ${mode.kind}`;
          ctx.report(report(ctx, name, child, mode.kind === 'built'));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    callPoolCase(ctx);
  },
};

/** The `engine call pool` case's blocks: how many of each mode, calls timed in each, untimed calls first. */
const POOL_BLOCKS = 16;
const POOL_CALLS = 25;
const POOL_WARMUP = 3;

/** The main thread's call pool against none, on the MNIST MLP's valueAndGrad (see the header). */
function callPoolCase(ctx: BenchContext): void {
  const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
  const params = initParams(graph, 1);
  const rng = new Rng(4);
  const feeds = {
    x: rng.uniformTensor([128, 784], 0, 1),
    y: tensor(Array.from({ length: 128 }, () => rng.int(10))),
  };
  const f = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} });
  const modes = [{}, { minBytes: Number.POSITIVE_INFINITY }];
  const ms: number[][] = [[], []];
  const faults: number[][] = [[], []];
  for (let i = 0; i < 100; i++) f(feeds, params);
  try {
    for (let b = 0; b < POOL_BLOCKS; b++) {
      for (const [m, options] of modes.entries()) {
        configureCallPool(options);
        for (let i = 0; i < POOL_WARMUP; i++) f(feeds, params);
        const times: number[] = [];
        const f0 = process.resourceUsage().minorPageFault;
        for (let i = 0; i < POOL_CALLS; i++) {
          const t0 = performance.now();
          f(feeds, params);
          times.push(performance.now() - t0);
        }
        faults[m]!.push((process.resourceUsage().minorPageFault - f0) / POOL_CALLS);
        ms[m]!.push(median(times));
      }
    }
  } finally {
    configureCallPool({});
  }
  const [pooled, fresh] = ms as [number[], number[]];
  ctx.report(
    resultOf(ctx, 'engine call pool', pooled, {
      model: 'mlp 784-256-128-10',
      batch: 128,
      no_pool_median_ms: round(median(fresh)),
      no_pool_min_ms: round(Math.min(...fresh)),
      no_pool_max_ms: round(Math.max(...fresh)),
      speedup: round(pairedRatio(fresh, pooled), 3),
      faults_per_call: round(median(faults[0]!), 1),
      no_pool_faults_per_call: round(median(faults[1]!), 1),
    }),
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  child(Number(process.argv[2]), Number(process.argv[3]), process.argv[4] !== 'total');
}
