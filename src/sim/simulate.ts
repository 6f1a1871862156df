import { Host, type HostEffect, type TaskInfo } from '../actor/host.ts';
import { ShardTables } from '../actor/kept-source.ts';
import type { StepStart } from '../actor/messages.ts';
import type { HostAction } from '../actor/task-queue.ts';
import { shardLayout } from '../autodiff/microbatch.ts';
import { InputError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import { type Counter, type Flow, phaseOf, type Span, type Trace, traceStats } from '../trace/trace.ts';
import type { CostModel } from './cost.ts';
import { EventQueue } from './heap.ts';
import { shapeEngine, type VirtualTensor } from './shape-engine.ts';
import { independentLinks, type WireStats } from './transport.ts';

/**
 * What `simulate` runs: the step's size, the cost model, and optionally a schedule and fewer cores
 * than workers.
 */
export interface SimulateOptions {
  /** Microbatches per replica. */
  microbatches: number;
  /** The batch size of the step (every replica's shards together). */
  batchSize: number;
  /** What each task and message costs (`stageCosts`, `flopCosts`, `traceCosts`). */
  cost: CostModel;
  /** Per-worker actions of a pipeline schedule (index: worker); none: dataflow order. */
  schedule?: readonly (readonly HostAction[])[];
  /** Cores the workers share (default: one per worker). More workers than cores wait for a core. */
  cores?: number;
  /** Record one span per task (default true; false keeps memory flat for huge runs). */
  record?: boolean;
  /** The ideal step time for the bubble relative to ideal (default: total work / workers). */
  idealMs?: number;
}

/** One simulated step: its time, bubble, busy time and memory per worker, counts, and its trace. */
export interface SimResult {
  /** The step's length, in the cost model's time unit (milliseconds for measured costs). */
  makespan: number;
  /** Idle fraction of the step: 1 - busy / (workers * makespan). */
  idleFraction: number;
  /** (makespan - ideal) / ideal. */
  bubbleVsIdeal: number;
  /** Busy time per worker. */
  busy: number[];
  /**
   * Per worker, what it holds at once over all its stages (summed at each instant, then the peak over
   * the step; not the sum of its stages' peaks, which come at different times): microbatches in
   * flight (forward done, last backward part not yet) and bytes of activations kept for backwards.
   */
  peakInFlight: number[];
  /** Per worker: the peak bytes of activations kept for backwards, over all its stages. */
  peakKeptBytes: number[];
  /** Per worker and stage (indexed by global stage), each stage's own peak of microbatches in flight. */
  stagePeakInFlight: number[][];
  /** Tasks run. */
  actions: number;
  /** Messages between workers. */
  messages: number;
  /** What messages spent on the wire: latency, service and queueing (Note [simulated transports]). */
  wire: WireStats;
  /** The simulated step as a trace (its spans only with `record`, the default). */
  trace: Trace;
}

type Delivered = Parameters<Host<VirtualTensor>['deliver']>[0];
type Event =
  | { kind: 'deliver'; worker: number; message: Delivered }
  | { kind: 'done'; worker: number; effects: HostEffect<VirtualTensor>[] }
  | { kind: 'chore'; worker: number };

// Note [message chores]
// A host's core does more than its tasks: it copies a value before posting it to another thread and
// sums a gradient contribution as it takes it. A cost model with `send` or `receive` charges that
// time to the host as a chore: a send's chore runs after the task that made the message, which leaves
// when its chore ends (a task's sends one after the other); a receive's chore runs when the host is
// between tasks, and the message reaches the host's logic when it ends. Chores go before the next task
// and hold a core as tasks do; they count in the worker's busy time but are not spans of the trace,
// and the step then ends with the last task or chore. A chore of 0 ms is no chore: the message goes
// or arrives at once, as without `send` and `receive`, so cost models without them simulate exactly
// as before.
interface Chore {
  ms: number;
  after: () => void;
}

/**
 * Discrete-event simulation of one step: the hosts of the plan, with their real actor logic, under a
 * virtual clock. A host runs one task at a time; the task's cost comes from the cost model and its
 * messages leave when it ends and arrive when the cost model's links deliver them (Note [simulated
 * transports]). With more workers than cores, a ready worker waits for a free core.
 */
export function simulate(plan: Plan, options: SimulateOptions): SimResult {
  const { microbatches, batchSize, cost } = options;
  const workers = plan.workers;
  const cores = options.cores ?? workers;
  const record = options.record ?? true;
  const { symbol, shards } = shardLayout(plan.graph, batchSize, { replicas: plan.replicas, microbatches });
  const start: StepStart = {
    step: 1,
    microbatches,
    shards: shards.map(({ replica, mb, size, scale }) => ({
      replica,
      mb,
      bindings: symbol === undefined ? [] : [[symbol, size] as const],
      scale,
    })),
  };
  const engine = shapeEngine(plan.graph);
  // One shard table for every host: the engine caches bound shapes by bindings object.
  const shardTables = new ShardTables();
  const hosts = Array.from({ length: workers }, (_, w) => {
    const host = new Host<VirtualTensor>(plan, w, new Map(), { engine, shards: shardTables });
    host.setSchedule(options.schedule?.[w] ?? null);
    return host;
  });
  const events = new EventQueue<Event>();
  const links = cost.links?.() ?? independentLinks((bytes, from, to) => cost.message(bytes, from, to));
  const busyUntil = new Float64Array(workers);
  const running = new Uint8Array(workers);
  const busy = new Array<number>(workers).fill(0);
  const waitingForCore: number[] = [];
  let coresBusy = 0;
  const spans: Span[] = [];
  const flows: Flow[] = [];
  const counters: Counter[] = [];
  let messages = 0;
  let actions = 0;
  let now = 0;
  // Note [message chores]: each worker's chores in order, and the one running.
  const chores: Chore[][] = Array.from({ length: workers }, () => []);
  const chore: (Chore | null)[] = new Array(workers).fill(null);
  let choresRun = 0;

  const perform = (worker: number, effects: HostEffect<VirtualTensor>[]) => {
    for (const e of effects) {
      if (e.kind !== 'send') continue;
      const ms = cost.send?.(e.message.kind, e.message.tensor.bytes, worker, e.worker) ?? 0;
      if (ms > 0) chores[worker]!.push({ ms, after: () => post(worker, e) });
      else post(worker, e);
    }
  };

  /** A message leaves `worker` now, on the links. */
  const post = (worker: number, e: Extract<HostEffect<VirtualTensor>, { kind: 'send' }>) => {
    const bytes = e.message.tensor.bytes;
    const arrive = links.send(now, bytes, worker, e.worker);
    messages++;
    if (record) {
      const m = e.message;
      flows.push({
        from: worker,
        to: e.worker,
        kind: m.kind === 'feed' ? 'activation' : m.kind,
        mb: 'mb' in m ? m.mb : -1,
        sent: now,
        received: arrive,
        bytes,
      });
    }
    events.push(arrive, { kind: 'deliver', worker: e.worker, message: e.message });
  };

  const occupy = (w: number, duration: number) => {
    running[w] = 1;
    coresBusy++;
    busyUntil[w] = now + duration;
    busy[w]! += duration;
  };

  const tryStart = (w: number) => {
    if (running[w] === 1) return;
    const next = chores[w]![0];
    if (next !== undefined) {
      if (coresBusy >= cores) {
        if (!waitingForCore.includes(w)) waitingForCore.push(w);
        return;
      }
      chores[w]!.shift();
      chore[w] = next;
      choresRun++;
      occupy(w, next.ms);
      events.push(now + next.ms, { kind: 'chore', worker: w });
      return;
    }
    const host = hosts[w]!;
    const task: TaskInfo | null = host.next();
    if (task === null) return;
    if (coresBusy >= cores) {
      if (!waitingForCore.includes(w)) waitingForCore.push(w);
      return;
    }
    const node = plan.graph.nodeAt(task.node);
    const duration = cost.task(task, node);
    const effects = host.run();
    actions++;
    occupy(w, duration);
    if (record) {
      spans.push({
        worker: w,
        phase: phaseOf(task.phase),
        stage: task.stage,
        mb: task.mb,
        start: now,
        end: now + duration,
        node: task.node,
      });
      counters.push({ worker: w, time: now, keptBytes: host.stats.keptBytes });
    }
    events.push(now + duration, { kind: 'done', worker: w, effects });
  };

  for (let w = 0; w < workers; w++) perform(w, hosts[w]!.startStep(start));
  const fed = plan.graph.inputs().filter((n) => plan.grad.forward[n.id] !== 0);
  for (const shard of shards) {
    for (const node of fed) {
      const shape = node.shape.map((d) => (typeof d === 'number' ? d : shard.size));
      const tensor = engine.zeros(shape, node.dtype);
      events.push(0, {
        kind: 'deliver',
        worker: plan.placement[shard.replica]![node.id]!,
        message: { kind: 'feed', step: 1, mb: shard.mb, replica: shard.replica, node: node.id, tensor },
      });
    }
  }
  // A host may have work before anything reaches it: a chore of its start (a parameter's value sent
  // with a cost), or a task whose inputs it holds.
  for (let w = 0; w < workers; w++) tryStart(w);
  let end = 0;
  for (;;) {
    const e = events.pop();
    if (e === undefined) break;
    now = events.now;
    if (e.kind === 'deliver') {
      const m = e.message;
      const ms = 'tensor' in m ? (cost.receive?.(m.kind, m.tensor.bytes, e.worker) ?? 0) : 0;
      const take = () => perform(e.worker, hosts[e.worker]!.deliver(m));
      if (ms > 0) chores[e.worker]!.push({ ms, after: take });
      else take();
      tryStart(e.worker);
    } else {
      running[e.worker] = 0;
      coresBusy--;
      end = Math.max(end, now);
      if (e.kind === 'done') perform(e.worker, e.effects);
      else {
        const done = chore[e.worker]!;
        chore[e.worker] = null;
        done.after();
      }
      tryStart(e.worker);
      while (coresBusy < cores && waitingForCore.length > 0) tryStart(waitingForCore.shift()!);
    }
  }
  const stuck = hosts.flatMap((h) => h.waiting());
  if (stuck.length > 0) {
    throw new InputError(
      `simulate: the step cannot finish; ${stuck.length} actors still wait, e.g. ${JSON.stringify(stuck.slice(0, 3))}`,
    );
  }
  const trace: Trace = { source: 'simulated', workers, spans, flows, counters };
  const total = busy.reduce((a, b) => a + b, 0);
  const ideal = options.idealMs ?? total / workers;
  const stats = record ? traceStats(trace) : null;
  // From the step's start to its last task or chore (spans alone would miss a last sum's chore).
  const makespan = choresRun > 0 ? end : (stats?.makespan ?? end);
  return {
    makespan,
    idleFraction: 1 - total / (workers * makespan),
    bubbleVsIdeal: (makespan - ideal) / ideal,
    busy,
    peakInFlight: hosts.map((h) => h.queue.hostPeakInFlight),
    peakKeptBytes: hosts.map((h) => h.stats.peakKeptBytes),
    stagePeakInFlight: hosts.map((h) => [...h.queue.peakInFlight]),
    actions,
    messages,
    wire: links.stats(),
    trace,
  };
}
