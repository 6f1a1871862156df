/**
 * `npx tsx test/bench/step-profile.ts [--steps N] [--warmup N] [--only <name>] [--updates local|coordinator]`
 *
 * Where a training step of the `train` suite's MNIST MLP (784-256-128-10, batch 128) goes, on 1
 * worker and on 2 workers data-parallel, without an optimizer (the gradients to the coordinator), with SGD and with Adam on the workers, sharded and
 * replicated parameters. It records the runtime's trace with its step marks (Note [step marks] in
 * src/trace/trace.ts) over N back-to-back steps without taking it between steps (a take is a control
 * round trip, which would let every update finish before the next start), then follows each step's
 * critical path back from the coordinator's "every report is in" (its update mark) to the last step's,
 * and prints the median of every segment over the steps whose path has the most common shape, and a
 * timeline of median event times from the coordinator's start. Not a test: figures only.
 */
import { MNIST_CLASSES, MNIST_PIXELS } from '../../src/data/mnist.ts';
import { initParams } from '../../src/graph/params.ts';
import type { OptimizerSpec } from '../../src/optim/spec.ts';
import type { ParamPlacement } from '../../src/partition/plan.ts';
import { COORDINATOR } from '../../src/protocol/envelope.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { threadsClusterOf } from '../../src/runtime/threads.ts';
import type { WorkerTrace } from '../../src/trace/recorder.ts';
import type { Span, StepMark } from '../../src/trace/trace.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { median } from './harness.ts';
import { type Batch, mnistBatches } from './suites/train.ts';

interface Config {
  name: string;
  workers: number;
  replicas: number;
  /** None: the coordinator gets every gradient (the `actors` suite's `overhead` case). */
  optimizer?: OptimizerSpec;
  paramPlacement?: ParamPlacement;
}

const SGD: OptimizerSpec = { name: 'sgd', lr: 0.1 };
// As `npm start` trains (the Trainer's default optimizer).
const ADAM: OptimizerSpec = { name: 'adam', lr: 1e-3 };

const CONFIGS: Config[] = [
  { name: '1w-none', workers: 1, replicas: 1 },
  { name: '1w-sgd', workers: 1, replicas: 1, optimizer: SGD },
  { name: '2w-sgd-sharded', workers: 2, replicas: 2, optimizer: SGD, paramPlacement: 'sharded' },
  { name: '2w-sgd-replicated', workers: 2, replicas: 2, optimizer: SGD, paramPlacement: 'replicated' },
  { name: '1w-adam', workers: 1, replicas: 1, optimizer: ADAM },
  { name: '2w-adam-sharded', workers: 2, replicas: 2, optimizer: ADAM, paramPlacement: 'sharded' },
  { name: '2w-adam-replicated', workers: 2, replicas: 2, optimizer: ADAM, paramPlacement: 'replicated' },
];

/** One worker's record, indexed for the walk. */
interface Part {
  spans: Span[];
  marks: StepMark[];
  /** Data messages taken from peers, by kind and time. */
  received: WorkerTrace['received'];
}

/** A point on a critical path: what happened, and when (wall-clock ms). */
type Point = readonly [label: string, time: number];

/** The last element of `list` (sorted by `key`) with key at most `t`, or undefined. */
function lastAtMost<X>(list: readonly X[], key: (x: X) => number, t: number): X | undefined {
  let found: X | undefined;
  for (const x of list) {
    if (key(x) <= t + 1e-9) found = x;
    else break;
  }
  return found;
}

/**
 * Step `step`'s critical path, from the coordinator's update mark of the last step (or its start
 * mark for the first) to its own: the points in order, each segment between two consecutive points.
 */
function criticalPath(parts: Map<number, Part>, step: number): Point[] | null {
  const c = parts.get(COORDINATOR)!;
  const cm = (what: string, s: number) => c.marks.find((m) => m.what === what && m.step === s);
  const end = cm('update', step);
  const begin = cm('update', step - 1);
  const cstart = cm('start', step);
  if (end === undefined || begin === undefined || cstart === undefined) return null;
  const rev: Point[] = [['coord: every report in, update sent', end.time]];
  // The coordinator's last report envelope before it.
  const lastIn = lastAtMost(
    c.marks.filter((m) => m.what === 'receive'),
    (m) => m.time,
    end.time,
  );
  if (lastIn === undefined) return null;
  const w = lastIn.peer!;
  rev.push([`coord: takes w${w}'s report envelope`, lastIn.time]);
  const part = parts.get(w)!;
  const post = lastAtMost(
    part.marks.filter((m) => m.what === 'post' && m.peer === COORDINATOR),
    (m) => m.time,
    lastIn.time,
  )!;
  rev.push([`w${w}: report posted (end)`, post.end]);
  rev.push([`w${w}: report post begins`, post.time]);
  const report = lastAtMost(
    part.marks.filter((m) => m.what === 'report' && m.report !== 'updated'),
    (m) => m.time,
    post.time,
  )!;
  rev.push([`w${w}: last report (${report.report})`, report.time]);
  walkBack(parts, w, report.time, step, rev);
  rev.push(['coord: last update sent', begin.time]);
  return rev.reverse();
}

/**
 * From an instant `t` on worker `w` (a report, a gradient's post), back to the coordinator's update of
 * the last step: through a receive that made it (a gradient summed on arrival) to its sender, or
 * through the tasks that made it to their first forward, and what that waited for (a parameter from
 * its owner, or the step's start), to the coordinator's start.
 */
function walkBack(parts: Map<number, Part>, w: number, t: number, step: number, rev: Point[]): void {
  const part = parts.get(w)!;
  const begun = part.marks.find((m) => m.what === 'start' && m.step === step);
  if (begun === undefined) return;
  const stepSpans = part.spans.filter((s) => s.start >= begun.time && s.end <= t + 1e-9);
  const lastTask = stepSpans.at(-1);
  const recv = part.marks.find(
    (m) => m.what === 'receive' && m.peer !== COORDINATOR && m.time <= t && m.end >= t && m.time >= begun.end,
  );
  if (recv !== undefined && (lastTask === undefined || lastTask.end <= recv.time)) {
    // Made while taking a peer's envelope (a gradient summed as it arrived).
    const p = recv.peer!;
    rev.push([`w${w}: takes w${p}'s envelope (sum)`, recv.time]);
    const sent = lastAtMost(
      parts.get(p)!.marks.filter((m) => m.what === 'post' && m.peer === w),
      (m) => m.time,
      recv.time,
    );
    if (sent === undefined) return;
    rev.push([`w${p}: post to w${w} (end)`, sent.end]);
    rev.push([`w${p}: post to w${w} begins`, sent.time]);
    walkBack(parts, p, sent.time, step, rev);
    return;
  }
  if (lastTask === undefined) {
    startChain(parts, w, step, begun, rev);
    return;
  }
  rev.push([`w${w}: last task before (${lastTask.phase}) ends`, lastTask.end]);
  const forwards = stepSpans.filter((s) => s.phase === 'F');
  const lastF = forwards.at(-1);
  if (lastF !== undefined && lastF !== lastTask) rev.push([`w${w}: last forward ends`, lastF.end]);
  if (lastF === undefined) return;
  // What the forwards waited for: a parameter from a peer (the envelope that carried the last one
  // taken before the last forward), or the start. The input nodes' forwards run at the start either way.
  const param = lastAtMost(
    part.received.filter((r) => r.kind === 'param' && r.time >= begun.time),
    (r) => r.time,
    lastF.start,
  );
  const paramIn =
    param === undefined
      ? undefined
      : part.marks.find(
          (m) => m.what === 'receive' && m.peer === param.peer && m.time <= param.time && m.end >= param.time,
        );
  const gate = paramIn !== undefined && paramIn.end >= begun.end ? paramIn.end : begun.end;
  const firstF = forwards.find((f) => f.start >= gate - 1e-9) ?? forwards[0]!;
  rev.push([
    `w${w}: first forward ${paramIn !== undefined ? 'after the parameter ' : ''}begins`,
    firstF.start,
  ]);
  if (paramIn !== undefined && paramIn.end >= begun.end) {
    const p = paramIn.peer!;
    rev.push([`w${w}: took w${p}'s envelope (param) ends`, paramIn.end]);
    rev.push([`w${w}: takes w${p}'s envelope (param)`, paramIn.time]);
    const sent = lastAtMost(
      parts.get(p)!.marks.filter((m) => m.what === 'post' && m.peer === w),
      (m) => m.time,
      paramIn.time,
    );
    if (sent === undefined) return;
    rev.push([`w${p}: post to w${w} (end)`, sent.end]);
    rev.push([`w${p}: post to w${w} begins`, sent.time]);
    const pBegun = parts.get(p)!.marks.find((m) => m.what === 'start' && m.step === step);
    if (pBegun === undefined) return;
    // Sent before the owner's start: with its last update (Note [parameters sent with the update]).
    if (pBegun.time > sent.time) updateChain(parts, p, step, rev);
    else startChain(parts, p, step, pBegun, rev);
    return;
  }
  startChain(parts, w, step, begun, rev);
}

/** Worker `w`'s last update, which sent the step's parameter values, and the coordinator's post that carried it. */
function updateChain(parts: Map<number, Part>, w: number, step: number, rev: Point[]): void {
  const part = parts.get(w)!;
  const upd = part.marks.find((m) => m.what === 'update' && m.step === step - 1);
  if (upd === undefined) return;
  rev.push([`w${w}: last update applied, parameters sent`, upd.end]);
  rev.push([`w${w}: last update taken`, upd.time]);
  const recv = lastAtMost(
    part.marks.filter((m) => m.what === 'receive' && m.peer === COORDINATOR),
    (m) => m.time,
    upd.time,
  );
  if (recv === undefined) return;
  rev.push([`w${w}: takes the coordinator's envelope (update)`, recv.time]);
  const sent = lastAtMost(
    parts.get(COORDINATOR)!.marks.filter((m) => m.what === 'post' && m.peer === w),
    (m) => m.time,
    recv.time,
  );
  if (sent === undefined) return;
  rev.push([`coord: post to w${w} (end)`, sent.end]);
  rev.push([`coord: post to w${w} begins`, sent.time]);
}

/** Worker `w`'s start of the step, the last update before it, and the coordinator's post that carried them. */
function startChain(parts: Map<number, Part>, w: number, step: number, begun: StepMark, rev: Point[]): void {
  const part = parts.get(w)!;
  rev.push([`w${w}: start taken (end)`, begun.end]);
  rev.push([`w${w}: start taken`, begun.time]);
  // The coordinator's envelope that carried the start; the last update is on the path when the host
  // applied it as it took that envelope (the coordinator's update), not before (its own decision).
  const recv = lastAtMost(
    part.marks.filter((m) => m.what === 'receive' && m.peer === COORDINATOR),
    (m) => m.time,
    begun.time,
  );
  if (recv === undefined) return;
  const upd = part.marks.find((m) => m.what === 'update' && m.step === step - 1);
  if (upd !== undefined && upd.time >= recv.time && upd.end <= begun.time + 1e-9) {
    rev.push([`w${w}: last update applied`, upd.end]);
    rev.push([`w${w}: last update taken`, upd.time]);
  }
  rev.push([`w${w}: takes the coordinator's envelope`, recv.time]);
  const c = parts.get(COORDINATOR)!;
  const sent = lastAtMost(
    c.marks.filter((m) => m.what === 'post' && m.peer === w),
    (m) => m.time,
    recv.time,
  );
  if (sent === undefined) return;
  rev.push([`coord: post to w${w} (end)`, sent.end]);
  rev.push([`coord: post to w${w} begins`, sent.time]);
  const cstart = c.marks.find((m) => m.what === 'start' && m.step === step);
  if (cstart !== undefined && cstart.time <= sent.time) rev.push(['coord: step starts', cstart.time]);
}

/** Segment names: "from -> to" of consecutive points. */
function segments(path: readonly Point[]): [string, number][] {
  const out: [string, number][] = [];
  for (let i = 1; i < path.length; i++)
    out.push([`${path[i - 1]![0]}  ->  ${path[i]![0]}`, path[i]![1] - path[i - 1]![1]]);
  return out;
}

const fmt = (ms: number) => ms.toFixed(3).padStart(7);

function report(config: Config, traces: WorkerTrace[], steps: readonly number[], wall: number[]): void {
  const parts = new Map<number, Part>();
  for (const t of traces) {
    const spans = [...t.spans].sort((a, b) => a.end - b.end);
    const marks = [...t.marks].sort((a, b) => a.time - b.time);
    const received = [...t.received].sort((a, b) => a.time - b.time);
    parts.set(t.worker, { spans, marks, received });
  }
  const shapes = new Map<string, [string, number][][]>();
  const cycles: number[] = [];
  for (const step of steps) {
    const path = criticalPath(parts, step);
    if (path === null) continue;
    const segs = segments(path);
    cycles.push(path.at(-1)![1] - path[0]![1]);
    const key = segs.map(([k]) => k).join('|');
    const list = shapes.get(key) ?? [];
    list.push(segs);
    shapes.set(key, list);
  }
  const ranked = [...shapes.values()].sort((a, b) => b.length - a.length);
  console.log(
    `\n== ${config.name}: median step ${median(wall).toFixed(3)} ms (await to await), cycle between update marks ${median(cycles).toFixed(3)} ms, ${cycles.length} steps`,
  );
  for (const [i, list] of ranked.slice(0, 2).entries()) {
    const total = median(list.map((segs) => segs.reduce((s, [, d]) => s + d, 0)));
    console.log(
      `-- critical path ${i === 0 ? '(most common)' : '(next)'}: ${list.length} of ${cycles.length} steps, median total ${total.toFixed(3)} ms`,
    );
    // Medians do not add up when stalls (a collection, a descheduled thread) hit a different segment
    // in each step; means do, so both are printed.
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(
      `   median     mean  segment (mean total ${fmt(mean(list.map((g) => g.reduce((a, [, d]) => a + d, 0))))})`,
    );
    for (let s = 0; s < list[0]!.length; s++) {
      const ds = list.map((segs) => segs[s]![1]);
      console.log(`  ${fmt(median(ds))}  ${fmt(mean(ds))}  ${list[0]![s]![0]}`);
    }
  }
  timeline(parts, steps);
}

/** Median times of each worker's events, in ms from the coordinator's start mark. */
function timeline(parts: Map<number, Part>, steps: readonly number[]): void {
  const c = parts.get(COORDINATOR)!;
  const rows = new Map<string, number[]>();
  const add = (k: string, v: number | undefined) => {
    if (v === undefined) return;
    const list = rows.get(k) ?? [];
    list.push(v);
    rows.set(k, list);
  };
  for (const step of steps) {
    const t0 = c.marks.find((m) => m.what === 'start' && m.step === step)?.time;
    const next = c.marks.find((m) => m.what === 'start' && m.step === step + 1)?.time;
    if (t0 === undefined || next === undefined) continue;
    const at = (t: number | undefined) => (t === undefined ? undefined : t - t0);
    add(
      'coord: update sent (every report in)',
      at(c.marks.find((m) => m.what === 'update' && m.step === step)?.time),
    );
    add('coord: next step starts', at(next));
    for (const [w, part] of parts) {
      if (w === COORDINATOR) continue;
      const begun = part.marks.find((m) => m.what === 'start' && m.step === step);
      const nextBegun = part.marks.find((m) => m.what === 'start' && m.step === step + 1);
      if (begun === undefined || nextBegun === undefined) continue;
      const spans = part.spans.filter((s) => s.start >= begun.time && s.end <= nextBegun.time);
      const F = spans.filter((s) => s.phase === 'F');
      const B = spans.filter((s) => s.phase !== 'F');
      const marks = part.marks.filter((m) => m.step === step);
      const upd = part.marks.find((m) => m.what === 'update' && m.step === step - 1);
      add(`w${w}: last update taken .. applied`, at(upd?.time));
      add(`w${w}:   applied`, at(upd?.end));
      add(`w${w}: start taken`, at(begun.time));
      add(`w${w}:   handed out`, at(begun.end));
      add(`w${w}: first forward begins`, at(F[0]?.start));
      add(`w${w}: last forward ends`, at(F.at(-1)?.end));
      add(`w${w}: last backward ends`, at(B.at(-1)?.end));
      const fromPeers = marks.filter((m) => m.what === 'receive' && m.peer !== COORDINATOR);
      add(`w${w}: last peer envelope taken`, at(fromPeers.at(-1)?.time));
      add(`w${w}:   done`, at(fromPeers.at(-1)?.end));
      const reports = marks.filter((m) => m.what === 'report' && m.report !== 'updated');
      add(`w${w}: last report`, at(reports.at(-1)?.time));
      const last = reports.at(-1);
      const toCoord = marks.find(
        (m) => m.what === 'post' && m.peer === COORDINATOR && last !== undefined && m.time >= last.time,
      );
      add(`w${w}: its post to coord`, at(toCoord?.time));
      add(
        `w${w}: task busy ms`,
        spans.reduce((s, x) => s + x.end - x.start, 0),
      );
    }
  }
  console.log('-- timeline (median ms from the coordinator start; busy: sum of task spans)');
  for (const [k, v] of rows) console.log(`  ${fmt(median(v))}  ${k}`);
}

async function profile(
  config: Config,
  batches: readonly Batch[],
  warmup: number,
  steps: number,
): Promise<void> {
  const graph = mlpClassifier({ features: MNIST_PIXELS, hidden: [256, 128], classes: MNIST_CLASSES });
  const runtime = await createRuntime(graph, {
    workers: config.workers,
    replicas: config.replicas,
    params: initParams(graph, 1),
    ...(config.optimizer !== undefined ? { optimizer: config.optimizer } : {}),
    ...(config.paramPlacement !== undefined ? { paramPlacement: config.paramPlacement } : {}),
    ...(updates !== undefined ? { updates } : {}),
  });
  try {
    const cluster = threadsClusterOf(runtime.plan)!;
    let i = 0;
    for (; i < warmup; i++) {
      const b = batches[i % batches.length]!;
      await runtime.step({ x: b.x, y: b.y });
    }
    await cluster.setTracing(true);
    const wall: number[] = [];
    const stepMs = new Map<number, number>();
    const first = i + 1;
    for (let k = 0; k < steps; k++, i++) {
      const t = performance.now();
      const b = batches[i % batches.length]!;
      const result = await runtime.step({ x: b.x, y: b.y });
      wall.push(performance.now() - t);
      stepMs.set(i + 1, result.timings.stepMs);
    }
    const traces = await cluster.takeTrace();
    // Where the hosts decide their updates (Note [local update]) the coordinator sends none: its
    // "every report is in" is then the step's start and its stepMs (measured from just before).
    const c = traces.find((t) => t.worker === COORDINATOR)!;
    for (const [s, ms] of stepMs) {
      if (c.marks.some((m) => m.what === 'update' && m.step === s)) continue;
      const start = c.marks.find((m) => m.what === 'start' && m.step === s);
      if (start !== undefined)
        c.marks.push({ ...start, what: 'update', time: start.time + ms, end: start.time + ms });
    }
    await cluster.setTracing(false);
    // The first traced step has no traced update before it; the last no next start.
    const numbers = Array.from({ length: steps - 2 }, (_, k) => first + 1 + k);
    report(config, traces, numbers, wall);
  } finally {
    await runtime.close();
  }
}

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(argv[i + 1]);
};
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
// Who decides each step's update where the hosts could (Note [local update]): the runtime's default, or --updates.
const updates = argv.includes('--updates')
  ? (argv[argv.indexOf('--updates') + 1] as 'local' | 'coordinator')
  : undefined;
const batches = mnistBatches(16);
for (const config of CONFIGS) {
  if (only !== undefined && !config.name.includes(only)) continue;
  await profile(config, batches, flag('warmup', 100), flag('steps', 300));
}
