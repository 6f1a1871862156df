/**
 * `npm run bench -- actors --projection`: what the `large-graph` case's messages per second would be
 * on more cores, according to the simulator (which runs the hosts' own actor logic).
 *
 * Each round, on the lane graph of about 2e5 nodes placed per node (`--quick`: 5e4), measures one
 * after the other, after a first step each:
 *
 * 1. 1 worker in the main thread (`mode: 'in-process'`): nothing crosses a thread, so a task's cost is
 *    the step over its tasks, the local messages it makes included;
 * 2. 2 worker threads: the process's CPU time a step (every thread: the workers, the coordinator,
 *    V8's helpers), less the tasks at the cost above, over the messages between the workers, is
 *    what a message between hosts costs; the simulator charges half of it to the sender as a send
 *    chore and half to the receiver as a receive chore (Note [message chores], src/sim/simulate.ts),
 *    and a message takes LINK_MS on the way, the wake-up of a sleeping thread.
 *
 * Then it simulates the step on N = 2, 4, 8, 16 and 32 workers, one core each. Lines per N: the
 * simulated step, median over rounds (min-max), `messages_per_s` (the step's actor messages as the
 * 2-worker run counted them, local plus remote, over the simulated step), the idle fraction; the
 * 2-worker line carries the measured step and the model's error.
 *
 * The rounds run in a child process by the compiled package under plain node (as the `large-graph`
 * case's `start_built_ms`): from the sources, the in-process worker would run through tsx's loader
 * while the worker threads run the bundle, and the two costs would not be of one code.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { laneGraph } from '../../src/graph/generators.ts';
import { initParams } from '../../src/graph/params.ts';
import { compile } from '../../src/partition/plan.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import type { CostModel } from '../../src/sim/cost.ts';
import { simulate } from '../../src/sim/simulate.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { buildInto, execFileAsync } from './built.ts';
import type { BenchContext } from './harness.ts';
import { median, round } from './harness.ts';
import { resultOf } from './rounds.ts';

const ROUNDS = 2;
const LANES = 1000;
/** A message's way between two threads: the wake-up of a sleeping receiver (docs/measurements.md). */
const LINK_MS = 0.02;
const WORKERS = [2, 4, 8, 16, 32];

interface Measured {
  /** The median of 3 timed steps, ms. */
  stepMs: number;
  /** CPU time of the process a step (every thread), ms. */
  cpuMs: number;
  tasks: number;
  local: number;
  remote: number;
}

async function measure(
  graph: ReturnType<typeof laneGraph>,
  mode: 'in-process' | 'threads',
  workers: number,
): Promise<Measured> {
  const feeds = { x: new Rng(2).uniformTensor([LANES, 4], -1, 1) };
  const runtime = await createRuntime(graph, {
    mode,
    workers,
    placement: 'per-node',
    params: initParams(graph, 1),
    stepTimeoutMs: 600_000,
  });
  try {
    await runtime.step(feeds);
    const before = await runtime.stats();
    const cpu0 = process.cpuUsage();
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await runtime.step(feeds);
      times.push(performance.now() - t);
    }
    const cpu = process.cpuUsage(cpu0);
    const after = await runtime.stats();
    const count = (k: 'tasks' | 'localMessages' | 'remoteMessages') =>
      after.reduce((s, h, w) => s + h[k] - before[w]![k], 0) / 3;
    return {
      stepMs: median(times),
      cpuMs: (cpu.user + cpu.system) / 1000 / 3,
      tasks: count('tasks'),
      local: count('localMessages'),
      remote: count('remoteMessages'),
    };
  } finally {
    await runtime.close();
  }
}

/** What one round measured and simulated (the child's line). */
interface Round {
  nodes: number;
  messages: number;
  measuredMs: number;
  taskUs: number;
  remoteUs: number;
  /** By N: the simulated step, ms, and its idle fraction. */
  simulated: Record<number, { ms: number; idle: number }>;
}

export async function messageProjection(ctx: BenchContext): Promise<void> {
  const target = ctx.flags.has('quick') ? 5e4 : 2e5;
  const load = round(loadavg()[0]!, 2);
  const dir = mkdtempSync(join(tmpdir(), 'backflow-bench-projection-'));
  const rounds: Round[] = [];
  try {
    const out = await buildInto(dir, ['test/bench/message-projection.ts', 'workers/host.worker.ts']);
    const file = join(out, 'test', 'bench', 'message-projection.js');
    for (let r = 0; r < ROUNDS; r++) {
      const { stdout } = await execFileAsync(process.execPath, [file, String(target)], {
        maxBuffer: 1 << 20,
      });
      rounds.push(JSON.parse(stdout.trim().split('\n').pop()!) as Round);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const messages = rounds[0]!.messages;
  for (const n of WORKERS) {
    const sim = rounds.map((r) => r.simulated[n]!.ms);
    const measured = median(rounds.map((r) => r.measuredMs));
    const figures = {
      nodes: rounds[0]!.nodes,
      workers: n,
      messages_per_s: Math.round(messages / (median(sim) / 1000)),
      idle_fraction: round(median(rounds.map((r) => r.simulated[n]!.idle)), 3),
      task_us: round(median(rounds.map((r) => r.taskUs)), 2),
      message_between_hosts_us: round(median(rounds.map((r) => r.remoteUs)), 2),
      load,
      ...(n === 2
        ? {
            measured_step_ms: round(measured),
            measured_messages_per_s: Math.round(messages / (measured / 1000)),
            model_error: round((median(sim) - measured) / measured, 3),
          }
        : {}),
    };
    ctx.report(resultOf(ctx, `projected-messages-${n}-workers`, sim, figures));
  }
}

/** One round, in the child: measures 1 and 2 workers, simulates every N, prints a Round. */
async function child(target: number): Promise<void> {
  const graph = laneGraph(LANES, Math.round((target / LANES - 5) / 4));
  const one = await measure(graph, 'in-process', 1);
  const two = await measure(graph, 'threads', 2);
  const taskMs = one.stepMs / one.tasks;
  const remoteMs = Math.max(0, two.cpuMs - two.tasks * taskMs) / two.remote;
  const cost: CostModel = {
    task: () => taskMs,
    message: () => LINK_MS,
    send: () => remoteMs / 2,
    receive: () => remoteMs / 2,
  };
  const simulated: Round['simulated'] = {};
  for (const n of WORKERS) {
    const plan = compile(graph, { workers: n, placement: 'per-node' });
    const r = simulate(plan, { microbatches: 1, batchSize: LANES, cost, record: false });
    simulated[n] = { ms: r.makespan, idle: r.idleFraction };
  }
  const result: Round = {
    nodes: graph.size,
    messages: two.local + two.remote,
    measuredMs: two.stepMs,
    taskUs: taskMs * 1000,
    remoteUs: remoteMs * 1000,
    simulated,
  };
  console.log(JSON.stringify(result));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await child(Number(process.argv[2]));
}
