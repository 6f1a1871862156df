import { shardSizes } from '../autodiff/microbatch.ts';
import { edgeFacts } from '../autodiff/plan.ts';
import { fmtShape, MemoryBudgetError } from '../errors.ts';
import { CONST, INPUT, PARAM } from '../graph/columns.ts';
import { type Graph, label, type Node } from '../graph/graph.ts';
import { type OpDef, savesInput } from '../ops/op.ts';
import { bytesPerElement } from '../tensor/tensor.ts';
import { channelWindow, type FlowSettings, sinkWorkers } from './channels.ts';
import { edgeGradients, type Plan, paramWorkers } from './plan.ts';

// Note [memory budget]
// Every worker has a budget of tensor bytes (`memoryLimitMb`; by default half of the machine's memory
// over the workers), checked twice. Before any worker starts, `estimateMemory` adds up what the plan
// makes each worker hold at its peak, every symbolic dimension bound to one shard of the plan's
// estimate batch (`batchSize`):
//   parameters  each copy held, and each other worker's parameter its nodes read;
//   gradients   a partial sum per replica for each trainable parameter held;
//   optimizer   its state per element (8 bytes for SGD's momentum, 16 for Adam's moments);
//   kept        what each VJP keeps of a microbatch (its op's `saves`; parameters and constants are
//               counted once, above) times the microbatches in flight: all of them in dataflow order
//               and with GPipe, and under a schedule the most its worker's actions hold at once (a
//               microbatch enters a stage at its F and leaves at its last backward action);
//   queued      activations from other workers not consumed yet (a channel's window, Note
//               [activation credits], times its bytes per microbatch) and every microbatch's feeds;
//   task        the largest output of one task: a forward's value, or a VJP's contributions.
// A plan over budget is refused, naming the largest of these. During a step each host keeps books
// of the same kinds with the real shard sizes (src/actor/host-budget.ts; `liveBytes` in its stats)
// and fails a task before its output would take them over the budget: a MemoryBudgetError naming
// worker, node and microbatch, which fails the step, not the runtime. Neither counts temporaries
// inside a kernel or a VJP, nor gradient contributions waiting for their VJP; what the storage pool
// keeps alive is bounded beside them (Note [step arena]).

/** One of a worker's pipeline actions (HostAction), as the estimate reads it. */
export interface ComputeAction {
  readonly kind: 'F' | 'B' | 'I' | 'W';
  readonly stage: number;
  readonly mb: number;
}

/** What `estimateMemory` needs beyond the plan (Note [memory budget]). */
export interface MemoryOptions {
  /** Microbatches per replica per step. */
  readonly microbatches: number;
  /** Each worker's compute actions (index: worker), or null for dataflow order. */
  readonly actions?: readonly (readonly ComputeAction[])[] | null;
  /** Bytes of optimizer state per parameter element on the workers (0: no optimizer there). */
  readonly optimizerBytesPerElement?: number;
  /** The runtime's flow control, or null: every microbatch may wait at a channel. */
  readonly flow?: FlowSettings | null;
}

/** One entry of a worker's books: a node's tensors of one kind, `bytes` in all. */
export interface TensorBytes {
  readonly node: string;
  readonly what: string;
  readonly bytes: number;
}

/** A worker's estimated peak, by kind (Note [memory budget]). */
export interface WorkerMemory {
  /** The worker. */
  readonly worker: number;
  /** Parameters it holds, and copies of those its nodes read. */
  readonly paramBytes: number;
  /** Gradient partial sums. */
  readonly gradBytes: number;
  /** Optimizer state of the parameters it owns. */
  readonly optimizerBytes: number;
  /** Values kept for backwards, times the microbatches in flight. */
  readonly keptBytes: number;
  /** Activations queued from other workers (the credit window) and the feeds. */
  readonly queuedBytes: number;
  /** The largest single task output. */
  readonly taskBytes: number;
  /** The sum of the above: what the budget is checked against. */
  readonly totalBytes: number;
  /** The largest entries behind the total, largest first. */
  readonly largest: readonly TensorBytes[];
}

const LARGEST = 5;

/** Bytes as people read them: 1.5 KiB, 3.1 GiB. */
export function fmtBytes(b: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (b >= 1024 && u < units.length - 1) {
    b /= 1024;
    u++;
  }
  return u === 0 ? `${b} B` : `${b.toFixed(1)} ${units[u]}`;
}

const times = (n: number) => `${n} microbatch${n === 1 ? '' : 'es'}`;

/** A node as the books name it: its label, dtype and shape. */
export function describeValue(node: Node): string {
  return `${label(node)} ${node.dtype === 'float32' ? 'f32' : 'f64'}${fmtShape(node.shape)}`;
}

/**
 * The input slots whose values a node's VJP keeps from forward to backward, and -1 for its output
 * (its op's `saves`), each value once: nothing for a node whose VJP never runs.
 */
export function keptSlots(node: Node, def: OpDef | undefined, runsVjp: boolean): number[] {
  const slots: number[] = [];
  if (!runsVjp || def === undefined) return slots;
  const seen: number[] = [];
  node.inputs.forEach((input, s) => {
    // A node that reads one input twice (x * x) keeps its value once.
    if (savesInput(def, s) && !seen.includes(input)) {
      seen.push(input);
      slots.push(s);
    }
  });
  if (def.saves.output) slots.push(-1);
  return slots;
}

/** A worker's books while they are added up. */
class Books {
  param = 0;
  grad = 0;
  optimizer = 0;
  kept = 0;
  queued = 0;
  task = 0;
  readonly largest: TensorBytes[] = [];
  /** Kept bytes per microbatch by stage, and the largest values each stage keeps ([id, bytes]). */
  readonly keptPerMb = new Map<number, number>();
  readonly keptLargest = new Map<number, [number, number][]>();

  constructor(private readonly graph: Graph) {}

  /** A candidate for the largest entries (node `id` is described only if it is one). */
  note(id: number, what: string, bytes: number): void {
    const l = this.largest;
    if (bytes <= 0 || (l.length === LARGEST && bytes <= l[LARGEST - 1]!.bytes)) return;
    l.push({ node: describeValue(this.graph.nodeAt(id)), what, bytes });
    l.sort((a, b) => b.bytes - a.bytes);
    if (l.length > LARGEST) l.pop();
  }

  /**
   * Value `id`, which a VJP of stage `stage` keeps, unless `keptBy` says this worker and stage
   * (`by`) counted it already. A parameter or a constant is held for the step anyway: only a
   * microbatch's own values count.
   */
  keepValue(keptBy: Int32Array, by: number, stage: number, id: number, bytes: Float64Array): void {
    const kind = this.graph.columns.kinds[id];
    if (keptBy[id] === by || kind === PARAM || kind === CONST) return;
    keptBy[id] = by;
    this.keep(stage, id, bytes[id]!);
  }

  /** A value stage `stage` keeps per microbatch. */
  private keep(stage: number, id: number, bytes: number): void {
    this.keptPerMb.set(stage, (this.keptPerMb.get(stage) ?? 0) + bytes);
    let top = this.keptLargest.get(stage);
    if (top === undefined) this.keptLargest.set(stage, (top = []));
    if (top.length === LARGEST && bytes <= top[LARGEST - 1]![1]) return;
    top.push([id, bytes]);
    top.sort((a, b) => b[1] - a[1]);
    if (top.length > LARGEST) top.pop();
  }
}

/** A channel's books: bytes per microbatch, and its largest value. */
interface ChannelBooks {
  readonly from: number;
  readonly to: number;
  perMb: number;
  largest: number;
}

/** Each worker's estimated peak tensor bytes for one step (Note [memory budget]). */
export function estimateMemory(plan: Plan, options: MemoryOptions): WorkerMemory[] {
  const { graph, placement } = plan;
  const m = options.microbatches;
  const rows = Math.max(1, shardSizes(plan.options.batchSize, plan.replicas * m)[0]!);
  // Read from the graph's columns, node by node: on a graph of a million nodes the estimate is on the
  // runtime's start, and node objects are made (Note [nodes on first read]) only for what it names.
  const { inputStart, inputIds, kinds, shapes } = graph.columns;
  const { saved, savesOutput } = edgeFacts(graph);
  const carriesGradient = edgeGradients(plan);
  const bytes = new Float64Array(graph.size);
  for (let id = 0; id < graph.size; id++) {
    let size = bytesPerElement(graph.dtypeOf(id));
    for (const d of shapes[id]!) size *= typeof d === 'number' ? d : rows;
    bytes[id] = size;
  }
  const books = Array.from({ length: plan.workers }, () => new Books(graph));
  const perElement = options.optimizerBytesPerElement ?? 0;
  const trainable = new Set(plan.params);
  for (const node of graph.params()) {
    for (const w of paramWorkers(plan, node.id)) {
      const b = books[w]!;
      b.param += bytes[node.id]!;
      b.note(node.id, 'parameter', bytes[node.id]!);
      if (!trainable.has(node.id)) continue;
      b.grad += bytes[node.id]! * plan.replicas;
      b.note(node.id, 'gradient sums', bytes[node.id]! * plan.replicas);
      const state = (bytes[node.id]! / bytesPerElement(node.dtype)) * perElement;
      b.optimizer += state;
      b.note(node.id, 'optimizer state', state);
    }
  }
  const readParams = books.map(() => new Set<number>());
  const channels = new Map<number, ChannelBooks>();
  // Who last counted a value as kept (worker and stage): a value two consumers keep is one storage.
  const keptBy = new Int32Array(graph.size).fill(-1);
  const sinks: number[] = [];
  for (let r = 0; r < plan.replicas; r++) {
    const p = placement[r]!;
    for (let id = 0; id < graph.size; id++) {
      const w = p[id]!;
      const kind = kinds[id]!;
      if (w < 0 || kind === PARAM || kind === CONST) continue;
      const b = books[w]!;
      const stage = plan.stageOf[id]!;
      const i0 = inputStart[id]!;
      const arity = inputStart[id + 1]! - i0;
      let contributions = 0;
      let runsVjp = false;
      for (let s = 0; s < arity; s++) {
        const input = inputIds[i0 + s]!;
        if (carriesGradient(id, s)) {
          contributions += bytes[input]!;
          runsVjp = true;
        }
        if (kinds[input] !== PARAM || readParams[w]!.has(input)) continue;
        const holders = paramWorkers(plan, input);
        if (holders.includes(w)) continue;
        readParams[w]!.add(input);
        b.param += bytes[input]!;
        b.note(input, `parameter (a copy read from worker ${holders[0]})`, bytes[input]!);
      }
      // An input's forward hands its feed on: it makes nothing.
      const task = Math.max(kind === INPUT ? 0 : bytes[id]!, contributions);
      if (task > b.task) b.task = task;
      b.note(id, "the output of one task (its value, or its VJP's contributions)", task);
      if (kind === INPUT) {
        b.queued += m * bytes[id]!;
        b.note(id, `feeds (x ${times(m)})`, m * bytes[id]!);
      }
      if (runsVjp) {
        const by = w * plan.stages + stage;
        // What keptSlots names, without its arrays: a value read twice (x * x) is counted once by keptBy.
        for (let s = 0; s < arity; s++) {
          if (saved[i0 + s] === 1) b.keepValue(keptBy, by, stage, inputIds[i0 + s]!, bytes);
        }
        if (savesOutput[id] === 1) b.keepValue(keptBy, by, stage, id, bytes);
      }
      const n = sinkWorkers(plan, id, r, sinks);
      for (let k = 0; k < n; k++) {
        const to = sinks[k]!;
        const key = (r * plan.stages + stage) * plan.workers + to;
        let ch = channels.get(key);
        if (ch === undefined) channels.set(key, (ch = { from: w, to, perMb: 0, largest: id }));
        ch.perMb += bytes[id]!;
        if (bytes[id]! > bytes[ch.largest]!) ch.largest = id;
      }
    }
  }
  for (const ch of channels.values()) {
    const window = channelWindow(options.flow ?? null, ch.perMb, m);
    const b = books[ch.to]!;
    b.queued += window * ch.perMb;
    b.note(ch.largest, `queued from worker ${ch.from} (x ${times(window)})`, window * bytes[ch.largest]!);
  }
  return books.map((b, w) => {
    const inFlight = peakInFlight(b.keptPerMb, options.actions?.[w] ?? null, m);
    for (const [stage, top] of b.keptLargest) {
      const n = inFlight.get(stage) ?? 0;
      b.kept += n * (b.keptPerMb.get(stage) ?? 0);
      for (const [id, v] of top) b.note(id, `kept for backward (x ${times(n)})`, n * v);
    }
    const total = b.param + b.grad + b.optimizer + b.kept + b.queued + b.task;
    return {
      worker: w,
      paramBytes: b.param,
      gradBytes: b.grad,
      optimizerBytes: b.optimizer,
      keptBytes: b.kept,
      queuedBytes: b.queued,
      taskBytes: b.task,
      totalBytes: total,
      largest: b.largest,
    };
  });
}

/**
 * Microbatches in flight per stage at the worker's peak of kept bytes: every microbatch in dataflow
 * order; under a schedule, where its actions hold the most (a microbatch enters a stage at its F and
 * leaves at its W, or at its B or I when the worker runs no W for it).
 */
function peakInFlight(
  keptPerMb: ReadonlyMap<number, number>,
  actions: readonly ComputeAction[] | null,
  microbatches: number,
): Map<number, number> {
  if (actions === null) return new Map([...keptPerMb.keys()].map((s) => [s, microbatches]));
  const withW = new Set(actions.filter((a) => a.kind === 'W').map((a) => `${a.stage},${a.mb}`));
  const now = new Map<number, number>();
  let peak = new Map<number, number>();
  let live = 0;
  let most = 0;
  for (const a of actions) {
    const last = a.kind === 'W' || (a.kind !== 'F' && !withW.has(`${a.stage},${a.mb}`));
    if (a.kind !== 'F' && !last) continue;
    const delta = a.kind === 'F' ? 1 : -1;
    now.set(a.stage, (now.get(a.stage) ?? 0) + delta);
    live += delta * (keptPerMb.get(a.stage) ?? 0);
    if (live > most || peak.size === 0) {
      most = live;
      peak = new Map(now);
    }
  }
  return peak;
}

/**
 * Refuses an estimate with a worker over `budgetBytes` (Note [memory budget]): a MemoryBudgetError
 * naming the worker, its books and its largest tensors. `how` says where the budget comes from.
 */
export function checkMemoryBudget(estimate: readonly WorkerMemory[], budgetBytes: number, how: string): void {
  let worst: WorkerMemory | null = null;
  for (const w of estimate)
    if (w.totalBytes > budgetBytes && (worst === null || w.totalBytes > worst.totalBytes)) worst = w;
  if (worst === null) return;
  const parts = [
    ['parameters', worst.paramBytes],
    ['gradient sums', worst.gradBytes],
    ['optimizer state', worst.optimizerBytes],
    ['kept for backward', worst.keptBytes],
    ['queued', worst.queuedBytes],
    ['one task', worst.taskBytes],
  ] as const;
  const books = parts
    .filter(([, b]) => b > 0)
    .map(([what, b]) => `${what} ${fmtBytes(b)}`)
    .join(', ');
  const largest = worst.largest.map((t) => `${t.node} ${t.what}: ${fmtBytes(t.bytes)}`).join('; ');
  throw new MemoryBudgetError(
    `worker ${worst.worker} would hold about ${fmtBytes(worst.totalBytes)} of tensors, over its memory budget ` +
      `of ${fmtBytes(budgetBytes)} (${how}): ${books}. Largest: ${largest}. Use more workers or microbatches, ` +
      'a smaller batch, or a larger memoryLimitMb',
    {
      worker: worst.worker,
      phase: 'compile',
      expected: budgetBytes,
      found: worst.totalBytes,
      largest: worst.largest,
    },
  );
}
