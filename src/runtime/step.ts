import type { Message } from '../actor/host.ts';
import type { Report, StepStart } from '../actor/messages.ts';
import { resolveShape } from '../autodiff/forward.ts';
import { type BatchShard, joinShardGradients } from '../autodiff/microbatch.ts';
import { fmtFound, InputError, NonFiniteError, StepTimeoutError } from '../errors.ts';
import { type Graph, label, type Node } from '../graph/graph.ts';
import type { LrSchedule } from '../optim/schedule.ts';
import { checkLr, globalNormOf, sumOfSquares } from '../optim/spec.ts';
import type { Plan } from '../partition/plan.ts';
import { type Tensor, zeros } from '../tensor/tensor.ts';
import type { Trace } from '../trace/trace.ts';
import { dict } from '../util/names.ts';
import { type Cluster, talkingPairs } from './cluster.ts';
import type { Inference } from './infer.ts';

/**
 * What `Runtime.step` resolves with: the loss, the gradients (or the update's norm and rate when
 * the optimizer runs on the workers), timings and, when recorded, a trace.
 */
export interface StepResult {
  /** The batch's mean loss (Note [microbatch scaling]). */
  loss: number;
  /**
   * Gradients of every parameter in `wrt`, by name (none when the optimizer runs on the workers), and
   * of every input in `wrt` (Note [input gradients] in src/autodiff/microbatch.ts).
   */
  grads: Record<string, Tensor>;
  /** The global gradient norm before clipping (Note [global norm order]). */
  gradNorm: number;
  /** The learning rate of the update, when the optimizer runs on the workers. */
  lr: number | null;
  /** True when a non-finite gradient made the step skip its update (nonFinite: 'skip'). */
  skipped: boolean;
  /** Where the time went. */
  timings: {
    /** Wall time of the step on the coordinator, in milliseconds. */
    stepMs: number;
  };
  /** With the `trace` option: the step's trace, times from the step's start. */
  trace?: Trace;
}

/** Options of one `Runtime.step`. */
export interface StepOptions {
  /** The learning rate of this step's update (default: the schedule's, else the optimizer's). */
  lr?: number;
  /**
   * The training step random ops (dropout) key their draws with (Note [run context] in
   * src/ops/step-key.ts): default one more than the last step's, from 1. A run resumed from a
   * checkpoint passes its own count, to draw what the uninterrupted run would have.
   */
  step?: number;
}

/** Refuses step options that are not what StepOptions says, before the step starts (InputError). */
export function checkStepOptions(options: StepOptions): void {
  if (options.lr !== undefined) checkLr(options.lr, 'step: options.lr');
  const step = options.step;
  if (step !== undefined && !(Number.isInteger(step) && step >= 0 && step < 2 ** 32)) {
    throw new InputError(`step: options.step: expected an integer in [0, 2^32), found ${fmtFound(step)}`, {
      option: 'step',
      expected: 'an integer in [0, 2^32)',
      found: step,
    });
  }
}

/** What the steps of a runtime are fed, wait for and finish with (fixed when the runtime is made). */
export interface StepRules {
  readonly plan: Plan;
  readonly microbatches: number;
  /** The inputs a step feeds: those the loss needs. */
  readonly fedInputs: readonly Node[];
  /** Parameters joined to the loss: each reports a gradient when no optimizer runs on the workers. */
  readonly connectedParams: number;
  /** Inputs in `wrt` joined to the loss: each reports a gradient per shard. */
  readonly connectedInputs: number;
  /** The optimizer runs on the workers: parameters report sums of squares, and the step sends an update. */
  readonly onWorkers: boolean;
  /** What a non-finite gradient or loss does: reject the step, or skip its update. */
  readonly nonFinite: 'error' | 'skip';
  /** Anomaly mode is on (so a non-finite step without an anomaly report need not suggest it). */
  readonly anomaly: boolean;
  /** Every host decides and applies each step's update itself (Note [local update]). */
  readonly localUpdates: boolean;
}

export function stepRules(
  plan: Plan,
  options: {
    microbatches?: number;
    optimizer?: unknown;
    nonFinite?: 'error' | 'skip';
    anomaly?: boolean;
    updates?: 'local' | 'coordinator';
  },
): StepRules {
  const disconnected = new Set(plan.grad.disconnected);
  return {
    localUpdates:
      options.optimizer !== undefined && options.updates !== 'coordinator' && decidesLocally(plan),
    plan,
    microbatches: options.microbatches ?? 1,
    fedInputs: plan.graph.inputs().filter((n) => plan.grad.forward[n.id] !== 0),
    connectedParams: plan.params.filter((id) => !disconnected.has(id)).length,
    connectedInputs: plan.inputGrads.filter((id) => !disconnected.has(id)).length,
    onWorkers: options.optimizer !== undefined,
    nonFinite: options.nonFinite ?? 'error',
    anomaly: options.anomaly ?? false,
  };
}

/**
 * Whether every host can decide every step's update itself (Note [local update]): every parameter
 * that gets a gradient has a copy on every worker, no input gets one, and every two workers talk
 * (each host sends its shards' losses to every other).
 */
function decidesLocally(plan: Plan): boolean {
  if (plan.inputGrads.length > 0 || plan.params.length === 0) return false;
  if (!plan.params.every((id) => (plan.paramWorkers.get(id)?.length ?? 0) === plan.workers)) return false;
  const talk = talkingPairs(plan);
  const n = plan.workers;
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (talk[a * n + b] === 0) return false;
  return true;
}

/** How a step settles; settling also disarms its deadline. */
export interface Settle<R> {
  resolve(r: R): void;
  reject(e: Error): void;
}

/** A step about to start: its state as the coordinator tracks it, and the messages that start it. */
export interface StepLaunch {
  readonly state: StepState | Inference;
  readonly start: StepStart;
  readonly feeds: Map<number, Message[]>;
}

export type AnomalyReport = Extract<Report<Tensor>, { kind: 'anomaly' }>;

/** A step in flight, as the coordinator sees it: what the hosts have reported so far. */
export interface StepState {
  step: number;
  lr: number | undefined;
  /** The rate of the update the hosts decide themselves (Note [local update]), fixed at the start. */
  localLr?: number;
  /** Losses by shard (replica * microbatches + mb). */
  losses: Map<number, number>;
  grads: Map<number, Tensor>;
  /** Input gradients by node, per shard, and how many arrived. */
  inputGrads: Map<number, Tensor[]>;
  inputReports: number;
  /** The batch's symbolic dimensions (the shape of an input's zero gradient). */
  bindings: ReadonlyMap<string, number>;
  sumsq: Map<number, number>;
  anomalies: AnomalyReport[];
  finishing: boolean;
  expectedLosses: number;
  resolve: (r: StepResult) => void;
  reject: (e: Error) => void;
  started: number;
  /** Wall-clock ms of the step's start, the origin of its trace. */
  origin: number;
  shards: { replica: number; mb: number; scale: number }[];
}

/** What the hosts' reports add up to: the step's result but for its update, timings and trace. */
export type StepOutcome = Pick<StepResult, 'loss' | 'grads' | 'gradNorm' | 'skipped'>;

/** The step start every host gets before the step's data. */
export function stepStart(
  step: number,
  microbatches: number,
  shards: readonly BatchShard[],
  trainingStep: number,
  localLr?: number,
  clipNorm?: number,
): StepStart {
  // Note [local update]: the rule of the update every host applies itself.
  const rule =
    localLr === undefined ? {} : { update: { lr: localLr, ...(clipNorm !== undefined ? { clipNorm } : {}) } };
  return {
    step,
    trainingStep,
    microbatches,
    shards: shards.map((s) => ({ replica: s.replica, mb: s.mb, bindings: [...s.bindings], scale: s.scale })),
    ...rule,
  };
}

/** The feeds of a step's input actors (default: those the loss needs), by the worker that holds them. */
export function feedMessages(
  rules: StepRules,
  step: number,
  shards: readonly BatchShard[],
  inputs: readonly Node[] = rules.fedInputs,
): Map<number, Message[]> {
  const perWorker = new Map<number, Message[]>();
  for (const shard of shards) {
    for (const node of inputs) {
      const w = rules.plan.placement[shard.replica]![node.id]!;
      const list = perWorker.get(w) ?? [];
      list.push({
        kind: 'feed',
        step,
        mb: shard.mb,
        replica: shard.replica,
        node: node.id,
        tensor: shard.feeds[node.name!]!,
      });
      perWorker.set(w, list);
    }
  }
  return perWorker;
}

/** Whether every loss and gradient the step waits for has been reported. */
export function isComplete(state: StepState, rules: StepRules): boolean {
  if (state.losses.size < state.expectedLosses) return false;
  if (state.inputReports < rules.connectedInputs * state.expectedLosses) return false;
  return rules.onWorkers
    ? state.sumsq.size >= rules.plan.params.length
    : state.grads.size >= rules.connectedParams && state.sumsq.size >= rules.connectedParams;
}

/**
 * The step's result from its reports: the loss in the order of Note [gradient sum order] (replicas,
 * then microbatches), every gradient (a zero for one never reported), the global norm, and input
 * gradients joined per shard. A non-finite loss or gradient rejects the step with a NonFiniteError,
 * or with `nonFinite: 'skip'` marks it skipped (nothing to undo on the workers: their gradients are
 * dropped when the next step starts).
 */
export function stepResult(state: StepState, rules: StepRules): StepOutcome {
  const { plan, microbatches: m } = rules;
  const graph = plan.graph;
  let loss = 0;
  for (let r = 0; r < plan.replicas; r++) {
    let lossR = 0;
    for (let mb = 0; mb < m; mb++) {
      const k = r * m + mb;
      lossR += state.losses.get(k)! * state.shards[k]!.scale;
    }
    loss += lossR;
  }
  const grads = dict<Tensor>();
  const sums = dict<number>();
  for (const id of plan.params) {
    const node = graph.nodeAt(id);
    if (rules.onWorkers) sums[label(node)] = state.sumsq.get(id)!;
    else {
      const g = state.grads.get(id) ?? zeros(node.shape as number[], node.dtype);
      grads[label(node)] = g;
      // Its host's sum (Note [global norm order]); a parameter the loss does not reach has none.
      sums[label(node)] = state.sumsq.get(id) ?? sumOfSquares(g);
    }
  }
  const gradNorm = globalNormOf(sums);
  for (const id of plan.inputGrads) {
    const node = graph.nodeAt(id);
    const parts = state.inputGrads.get(id);
    grads[label(node)] =
      parts === undefined
        ? zeros(resolveShape(node.shape, state.bindings, label(node)), node.dtype)
        : joinShardGradients(node, parts, m);
  }
  const finite = Number.isFinite(gradNorm) && Number.isFinite(loss);
  if (!finite && rules.nonFinite === 'error') throw nonFiniteError(state, rules, loss, gradNorm, sums);
  return { loss, grads, gradNorm, skipped: !finite };
}

function nonFiniteError(
  state: StepState,
  rules: StepRules,
  loss: number,
  gradNorm: number,
  sums: Record<string, number>,
): NonFiniteError {
  const anomaly = firstAnomaly(state.anomalies, rules.plan.graph);
  const bad = Object.entries(sums)
    .filter(([, v]) => !Number.isFinite(v))
    .map(([k]) => k);
  const named = bad.length > 8 ? `${bad.slice(0, 8).join(', ')} and ${bad.length - 8} more` : bad.join(', ');
  const where = anomaly
    ? `; the first non-finite value came from ${anomaly.node} (${anomaly.op}) in the ${anomaly.phase} of microbatch ${anomaly.microbatch}, replica ${anomaly.replica}`
    : rules.anomaly
      ? ''
      : '; anomaly: true names the node that made it';
  return new NonFiniteError(
    `step ${state.step}: non-finite ${bad.length > 0 ? `gradient in ${named}` : `loss ${loss}`} (global norm ${gradNorm})${where}; nonFinite: 'skip' skips such steps`,
    { step: state.step, params: bad, ...(anomaly ? { anomaly } : {}) },
  );
}

/**
 * The rate of a step's update, the `update`-th: the step's own, else the schedule's, else the
 * optimizer's. Checked before the update is sent: the step rejects instead, and the workers drop its
 * gradients. Under Note [local update] it is computed as the step starts (the hosts need it then),
 * and a bad one rejects the step before it starts.
 */
export function rateOf(
  state: Pick<StepState, 'lr' | 'step'>,
  schedule: LrSchedule | undefined,
  baseLr: number,
  update: number,
): number {
  if (state.lr !== undefined) return state.lr;
  if (schedule === undefined) return baseLr;
  return checkLr(schedule(update), `step ${state.step}: lrSchedule(${update})`);
}

export interface Anomaly {
  node: string;
  op: string;
  microbatch: number;
  replica: number;
  phase: 'forward' | 'backward';
}

/**
 * The first non-finite value of a step: forward before backward; in the forward the earliest node in
 * topological order, in the backward the latest (the backward runs in reverse); then replica, microbatch.
 */
function firstAnomaly(reports: AnomalyReport[], graph: Graph): Anomaly | null {
  if (reports.length === 0) return null;
  const rank = (r: (typeof reports)[number]) => (r.phase === 'forward' ? r.node : graph.size * 2 - r.node);
  const first = [...reports].sort((a, b) => rank(a) - rank(b) || a.replica - b.replica || a.mb - b.mb)[0]!;
  const node = graph.nodeAt(first.node);
  return { node: label(node), op: node.op, microbatch: first.mb, replica: first.replica, phase: first.phase };
}

// Note [silent hosts]
// A step that misses its deadline asks every host what it still waits for, and gives each a short
// while to answer. A host that does not answer is hung, or stuck in a task it does not leave: left
// running, it would make every later step wait out the whole deadline again. So it is stopped (its
// thread terminated, or its shell halted, without reporting that as a death) and the runtime is
// broken, the timeout its cause: later calls reject at once with it, and the run goes on from a
// checkpoint in a new runtime. A timeout that every host answers (a lost message) fails its step only.

/**
 * A step that did not finish in time, with what every host still waits for, and the hosts that did
 * not answer, which are stopped (Note [silent hosts]).
 */
export function timeoutError(
  state: { readonly step: number },
  waiting: Awaited<ReturnType<Cluster['waiting']>>,
  timeoutMs: number,
): StepTimeoutError {
  const lines = waiting
    .slice(0, 20)
    .map(
      (w) =>
        `  worker ${w.worker}: ${w.node} (replica ${w.replica}, microbatch ${w.mb}) waits for ${w.waitingFor}: ${w.have}/${w.need}${w.from.length > 0 ? ` from ${w.from.join(', ')}` : ''}`,
    );
  // Hosts that did not answer in time: say so, rather than "nothing missing".
  lines.push(...waiting.silent.map((s) => `  ${s.why}`));
  const silent = waiting.silent.map((s) => s.worker);
  const stopped =
    silent.length === 0
      ? ''
      : `\n${silent.length === 1 ? `worker ${silent[0]} did not answer and is` : `workers ${silent.join(', ')} did not answer and are`} stopped: the runtime cannot continue`;
  return new StepTimeoutError(
    `step ${state.step} did not finish within ${timeoutMs} ms; still missing:\n${lines.join('\n') || '  (no host reported anything missing)'}${stopped}`,
    { step: state.step, waiting, silent },
  );
}
