import type { Failpoint, FailpointAction } from '../actor/failpoint.ts';
import type { HostStats, Message, TaskInfo } from '../actor/host.ts';
import type { ErrorReport, Report, StepStart, StepUpdate } from '../actor/messages.ts';
import { bindFeeds, paramValue, resolveShape, type TensorMap } from '../autodiff/forward.ts';
import { joinShardGradients, splitBatch } from '../autodiff/microbatch.ts';
import { warnDisconnected } from '../autodiff/plan.ts';
import {
  BackflowError,
  InputError,
  NonFiniteError,
  RuntimeClosedError,
  ScheduleError,
  StepTimeoutError,
  WorkerError,
} from '../errors.ts';
import { checkGraph } from '../graph/check.ts';
import { type Graph, label, type Node } from '../graph/graph.ts';
import { initParams } from '../graph/params.ts';
import { checkMaxNorm } from '../optim/clip.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import type { LrSchedule } from '../optim/schedule.ts';
import {
  checkLr,
  checkOptimizerSpec,
  clipScale,
  globalNormOf,
  makeOptimizer,
  type OptimizerSpec,
  sumOfSquares,
} from '../optim/spec.ts';
import { type CompileOptions, compile, type Plan } from '../partition/plan.ts';
import type { PoolOptions } from '../tensor/pool.ts';
import { type Tensor, zeros } from '../tensor/tensor.ts';
import { assembleTrace, wallClock } from '../trace/recorder.ts';
import type { Trace } from '../trace/trace.ts';
import type { Cluster, ClusterEvents, WaitingList } from './cluster.ts';
import { CLUSTER_MODES, CLUSTERS, type ClusterMode } from './clusters.ts';
import { hostActions, type ResolvedSchedule, resolveSchedule, type ScheduleSpec } from './pipeline.ts';
import { loadUserOps } from './user-ops.ts';

export interface RuntimeOptions extends CompileOptions {
  /**
   * A pipeline schedule: 'gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1', or a hand-written one (one
   * action list per worker of a replica), alone or with its stage placement ({ schedule,
   * stagePlacement }). Stages are cut contiguously and stage s runs on the worker the stage placement
   * gives it (option `stagePlacement`, default 'loop': s mod workers per replica). Without a
   * schedule, hosts run in dataflow order.
   */
  schedule?: ScheduleSpec;
  /**
   * Model chunks per worker, for interleaved and V schedules (default 1, or for a hand-written
   * schedule with an array placement, its length over the workers).
   */
  chunks?: number;
  /**
   * Where the hosts run (clusters.ts): 'threads' (default), one worker thread per worker;
   * 'in-process', every host in this thread, messages passed by reference; 'loopback', every host in
   * this thread, every message encoded into bytes and decoded and checked on the other side, as a
   * network carries it (Note [byte framing]).
   */
  mode?: ClusterMode;
  /**
   * Modules that define the graph's own ops (with `defineOp`), imported by this thread and then by
   * every worker before it compiles the plan (Note [user ops on workers]): absolute paths, file:
   * URLs, or package names (resolved as backflow's own imports are, from where it is installed);
   * a path starting with `./` or `../` is resolved against `process.cwd()`. Before any worker starts,
   * a module that cannot be imported is an OpModuleError, and an op of the graph that neither the
   * built-in ops nor these modules define is an OpError naming its node.
   */
  ops?: readonly string[];
  /** Microbatches per replica per step (default 1). */
  microbatches?: number;
  /** Initial parameter values (default: the graph's initializers with `seed`). */
  params?: TensorMap;
  seed?: number;
  /** A step that has not finished by then rejects with StepTimeoutError (default 30 s). */
  stepTimeoutMs?: number;
  /** In-process only: deliver messages in a seeded random order. */
  shuffleSeed?: number;
  /** Check the graph before starting (default true; a million-node graph built by this process may skip it). */
  validate?: boolean;
  /**
   * Runs this optimizer where the parameters live: gradients stay on their workers, and once a step's
   * loss and global norm are known every worker updates the parameters it owns (Note [deferred
   * update]). Without one, steps return the gradients.
   */
  optimizer?: OptimizerSpec;
  /** The learning rate per update (from 1), overriding the optimizer's. */
  lrSchedule?: LrSchedule;
  /** Clip the global gradient norm to this value before the update. */
  clipNorm?: number;
  /** What a non-finite gradient does: reject the step (default) or skip its update. */
  nonFinite?: 'error' | 'skip';
  /**
   * Anomaly mode: every host checks each value it makes for NaN and infinities, so that a non-finite
   * step names the first node that made one, its microbatch and phase. Costs a pass over every tensor.
   */
  anomaly?: boolean;
  /** Record every step's trace (task spans, messages, memory), returned as `StepResult.trace`. */
  trace?: boolean;
  /**
   * Threads and loopback: each host recycles its tensors' storages through a pool per shape class
   * (Note [storage pool]), default on; `false` turns it off. `poison` fills recycled storages with NaN
   * (tests).
   */
  pool?: false | PoolOptions;
  /** Where warnings go (a parameter or input in `wrt` the loss does not depend on); default process.emitWarning. */
  onWarning?: (message: string) => void;
  /** Hook for tests: a host reached a 'pause' failpoint. */
  onFailpoint?: (worker: number, action: FailpointAction, task: TaskInfo) => void;
}

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
  timings: { stepMs: number };
  /** With the `trace` option: the step's trace, times from the step's start. */
  trace?: Trace;
}

export interface StepOptions {
  /** The learning rate of this step's update (default: the schedule's, else the optimizer's). */
  lr?: number;
}

interface PendingUpdate {
  readonly step: number;
  /** Hosts yet to acknowledge. */
  remaining: number;
  readonly done: Promise<void>;
  settle(err: Error | null): void;
}

interface StepState {
  step: number;
  lr: number | undefined;
  losses: Map<number, number>;
  grads: Map<number, Tensor>;
  /** Input gradients by node, per shard (replica * microbatches + mb), and how many arrived. */
  inputGrads: Map<number, Tensor[]>;
  inputReports: number;
  /** The batch's symbolic dimensions (the shape of an input's zero gradient). */
  bindings: ReadonlyMap<string, number>;
  sumsq: Map<number, number>;
  anomalies: Extract<Report<Tensor>, { kind: 'anomaly' }>[];
  finishing: boolean;
  expectedLosses: number;
  resolve: (r: StepResult) => void;
  reject: (e: Error) => void;
  started: number;
  /** Wall-clock ms of the step's start, the origin of its trace. */
  origin: number;
  shards: { replica: number; mb: number; scale: number }[];
}

/**
 * The coordinator: compiles the plan, starts the hosts, and runs steps. A step splits the batch into
 * shards, feeds the input actors, and resolves when every shard's loss and every parameter's
 * gradient has been reported. Any failure rejects it with a typed error. Parameters change only
 * through `setParams` and, with an optimizer, through the update that follows a step that succeeded.
 */
export class Runtime {
  readonly plan: Plan;
  readonly graph: Graph;
  private readonly cluster: Cluster;
  private readonly options: RuntimeOptions;
  private stepIndex = 0;
  private current: StepState | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: Error | null = null;
  /** Updates sent so far (the optimizer's step count). */
  private updates = 0;
  /** Microbatches per replica, a step's deadline, and the optimizer's own learning rate (resolved once). */
  private readonly microbatches: number;
  private readonly stepTimeoutMs: number;
  private readonly baseLr: number | null;
  /** The inputs a step feeds: those the loss needs. */
  private readonly fedInputs: readonly Node[];
  /** Parameters joined to the loss: each reports a gradient when no optimizer runs on the workers. */
  private readonly connectedParams: number;
  /** Inputs in `wrt` joined to the loss: each reports a gradient per shard. */
  private readonly connectedInputs: number;
  /** The last step's update until every host has applied it (Note [deferred update]). */
  private pending: PendingUpdate | null = null;

  private constructor(plan: Plan, cluster: Cluster, options: RuntimeOptions) {
    this.plan = plan;
    this.graph = plan.graph;
    this.cluster = cluster;
    this.options = options;
    this.microbatches = options.microbatches ?? 1;
    this.stepTimeoutMs = options.stepTimeoutMs ?? 30_000;
    const spec = options.optimizer;
    this.baseLr = spec === undefined ? null : (spec.lr ?? makeOptimizer(spec).lr);
    this.fedInputs = plan.graph.inputs().filter((n) => plan.grad.forward[n.id] !== 0);
    const disconnected = new Set(plan.grad.disconnected);
    this.connectedParams = plan.params.filter((id) => !disconnected.has(id)).length;
    this.connectedInputs = plan.inputGrads.filter((id) => !disconnected.has(id)).length;
  }

  static async create(graph: Graph, options: RuntimeOptions): Promise<Runtime> {
    const mode = options.mode ?? 'threads';
    if (!Object.hasOwn(CLUSTERS, mode)) {
      throw new InputError(
        `mode: expected one of ${CLUSTER_MODES.join(', ')}, found ${JSON.stringify(mode)}`,
        {
          expected: CLUSTER_MODES,
          found: mode,
        },
      );
    }
    // Invariant 8: a graph is checked before any worker starts, its ops first (they may be the user's).
    // So is the optimizer: an update the workers refuse would only break the runtime after the step it follows.
    const sameThread = mode === 'in-process' || mode === 'loopback';
    const ops = await loadUserOps(graph, options.ops ?? [], !sameThread);
    if (options.validate !== false) checkGraph(graph);
    if (options.optimizer !== undefined) checkOptimizerSpec(options.optimizer, 'createRuntime: optimizer');
    if (options.clipNorm !== undefined) checkMaxNorm(options.clipNorm, 'createRuntime: clipNorm');
    let schedule: ResolvedSchedule | null = null;
    let compileOptions: CompileOptions = options;
    if (options.schedule !== undefined) {
      const replicas = options.replicas ?? 1;
      const group = Math.max(1, Math.floor(options.workers / replicas));
      // Note: the schedule, and its stage placement, are checked before any worker starts.
      schedule = resolveSchedule(options.schedule, {
        workers: group,
        microbatches: options.microbatches ?? 1,
        chunks: options.chunks,
        stagePlacement: options.stagePlacement,
      });
      const placement = options.placement ?? 'stages';
      if (placement !== 'stages' && placement !== 'manual') {
        throw new ScheduleError(
          `a pipeline schedule runs the graph cut into stages: placement must be 'stages' or 'manual', found '${placement}'`,
          { rule: 'placement', expected: ['stages', 'manual'], found: placement },
        );
      }
      compileOptions = {
        ...options,
        placement,
        stages: schedule.stageWorkers.length,
        stagePlacement: schedule.stageWorkers,
      };
    }
    const plan = compile(graph, compileOptions);
    warnDisconnected(graph, plan.grad, options.onWarning);
    const actions = schedule === null ? null : hostActions(plan, schedule.schedule);
    const params = options.params ?? initParams(graph, options.seed ?? 0);
    const values = checkedParams(plan, params);
    let runtime: Runtime | null = null;
    const events: ClusterEvents = {
      report: (worker, report) => runtime?.onReport(worker, report),
      failure: (error) => runtime?.fail(error, true),
      failpoint: (worker, action, task) => options.onFailpoint?.(worker, action, task),
    };
    const start = await CLUSTERS[mode]();
    const cluster: Cluster = await start(plan, events, {
      ops,
      ...(options.pool !== undefined ? { pool: options.pool } : {}),
      ...(options.shuffleSeed !== undefined ? { shuffleSeed: options.shuffleSeed } : {}),
    });
    runtime = new Runtime(plan, cluster, options);
    try {
      await cluster.setParams(values);
      if (actions !== null) await cluster.setSchedule(actions);
      if (options.optimizer !== undefined) await cluster.setOptimizer(options.optimizer);
      if (options.trace) await cluster.setTracing(true);
      if (options.anomaly) await cluster.setAnomalyMode(true);
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return runtime;
  }

  /** Runs one training step on a batch: forward and backward of every shard, gradients summed. */
  step(feeds: TensorMap, options: StepOptions = {}): Promise<StepResult> {
    try {
      if (options.lr !== undefined) checkLr(options.lr, 'step: options.lr');
    } catch (err) {
      return Promise.reject(err);
    }
    const run = this.queue.then(() => this.runStep(feeds, options.lr));
    this.queue = run.catch(() => {});
    return run;
  }

  private runStep(feeds: TensorMap, lr: number | undefined): Promise<StepResult> {
    if (this.closed) return Promise.reject(new RuntimeClosedError('step: the runtime is closed'));
    if (this.broken) return Promise.reject(this.brokenError('step'));
    const microbatches = this.microbatches;
    const shards = splitBatch(this.graph, feeds, { replicas: this.plan.replicas, microbatches });
    const step = ++this.stepIndex;
    const start: StepStart = {
      step,
      microbatches,
      shards: shards.map((s) => ({
        replica: s.replica,
        mb: s.mb,
        bindings: [...s.bindings],
        scale: s.scale,
      })),
    };
    return new Promise<StepResult>((resolve, reject) => {
      const state: StepState = {
        step,
        lr,
        losses: new Map(),
        grads: new Map(),
        inputGrads: new Map(),
        inputReports: 0,
        bindings: this.plan.inputGrads.length > 0 ? bindFeeds(this.graph.inputs(), feeds) : new Map(),
        sumsq: new Map(),
        anomalies: [],
        finishing: false,
        expectedLosses: shards.length,
        resolve,
        reject,
        started: performance.now(),
        origin: wallClock(),
        shards: shards.map((s) => ({ replica: s.replica, mb: s.mb, scale: s.scale })),
      };
      this.current = state;
      const timeout = this.stepTimeoutMs;
      const timer = setTimeout(() => void this.timeout(state), timeout);
      const done = () => clearTimeout(timer);
      state.resolve = (r) => {
        done();
        resolve(r);
      };
      state.reject = (e) => {
        done();
        reject(e);
      };
      this.cluster.startStep(start);
      const perWorker = new Map<number, Message[]>();
      for (const shard of shards) {
        for (const node of this.fedInputs) {
          const w = this.plan.placement[shard.replica]![node.id]!;
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
      for (const [w, messages] of perWorker) this.cluster.send(w, messages);
    });
  }

  private onReport(worker: number, report: Report<Tensor>): void {
    const pending = this.pending;
    if (pending !== null && report.step === pending.step) {
      if (report.kind === 'updated') {
        if (--pending.remaining === 0) pending.settle(null);
        return;
      }
      if (report.kind === 'failed' && report.error.context.phase === 'update') {
        const err = workerError(worker, report.error);
        this.broken ??= err;
        pending.settle(err);
        void this.fail(err, true);
        return;
      }
    }
    const state = this.current;
    if (state === null || report.step !== state.step) return;
    if (report.kind === 'loss')
      state.losses.set(report.replica * this.microbatches + report.mb, report.value);
    else if (report.kind === 'grad') state.grads.set(report.node, report.tensor);
    else if (report.kind === 'inputGrad') {
      let parts = state.inputGrads.get(report.node);
      if (parts === undefined) state.inputGrads.set(report.node, (parts = []));
      const k = report.replica * this.microbatches + report.mb;
      if (parts[k] !== undefined) return;
      parts[k] = report.tensor;
      state.inputReports++;
    } else if (report.kind === 'gradNorm') state.sumsq.set(report.node, report.sumsq);
    else if (report.kind === 'anomaly') {
      state.anomalies.push(report);
      return;
    } else if (report.kind === 'failed') {
      void this.fail(workerError(worker, report.error), false);
      return;
    } else return;
    this.maybeFinish(state);
  }

  private maybeFinish(state: StepState): void {
    if (state.finishing || state.losses.size < state.expectedLosses) return;
    if (state.inputReports < this.connectedInputs * state.expectedLosses) return;
    const onWorkers = this.options.optimizer !== undefined;
    if (onWorkers) {
      if (state.sumsq.size < this.plan.params.length) return;
    } else {
      if (state.grads.size < this.connectedParams) return;
    }
    state.finishing = true;
    void this.finish(state, onWorkers).catch((err: unknown) => {
      if (this.current === state) this.current = null;
      state.reject(err instanceof Error ? err : new Error(String(err)));
    });
  }

  private async finish(state: StepState, onWorkers: boolean): Promise<void> {
    // The loss in the order of Note [gradient sum order]: replicas, then microbatches.
    let loss = 0;
    const m = this.microbatches;
    for (let r = 0; r < this.plan.replicas; r++) {
      let lossR = 0;
      for (let mb = 0; mb < m; mb++) {
        const k = r * m + mb;
        lossR += state.losses.get(k)! * state.shards[k]!.scale;
      }
      loss += lossR;
    }
    const grads: Record<string, Tensor> = {};
    const sums: Record<string, number> = {};
    for (const id of this.plan.params) {
      const node = this.graph.nodes[id]!;
      if (onWorkers) sums[label(node)] = state.sumsq.get(id)!;
      else {
        const g = state.grads.get(id) ?? zeros(node.shape as number[], node.dtype);
        grads[label(node)] = g;
        sums[label(node)] = sumOfSquares(g);
      }
    }
    const gradNorm = globalNormOf(sums);
    for (const id of this.plan.inputGrads) {
      const node = this.graph.nodes[id]!;
      const parts = state.inputGrads.get(id);
      grads[label(node)] =
        parts === undefined
          ? zeros(resolveShape(node.shape, state.bindings, label(node)), node.dtype)
          : joinShardGradients(node, parts, this.microbatches);
    }
    let skipped = false;
    let lr: number | null = null;
    const anomaly = firstAnomaly(state.anomalies, this.graph);
    if (!Number.isFinite(gradNorm) || !Number.isFinite(loss)) {
      // Nothing to undo on the workers: their gradients are dropped when the next step starts.
      if ((this.options.nonFinite ?? 'error') === 'error') {
        const bad = Object.entries(sums)
          .filter(([, v]) => !Number.isFinite(v))
          .map(([k]) => k);
        const named =
          bad.length > 8 ? `${bad.slice(0, 8).join(', ')} and ${bad.length - 8} more` : bad.join(', ');
        const where = anomaly
          ? `; the first non-finite value came from ${anomaly.node} (${anomaly.op}) in the ${anomaly.phase} of microbatch ${anomaly.microbatch}, replica ${anomaly.replica}`
          : this.options.anomaly
            ? ''
            : '; anomaly: true names the node that made it';
        throw new NonFiniteError(
          `step ${state.step}: non-finite ${bad.length > 0 ? `gradient in ${named}` : `loss ${loss}`} (global norm ${gradNorm})${where}; nonFinite: 'skip' skips such steps`,
          { step: state.step, params: bad, ...(anomaly ? { anomaly } : {}) },
        );
      }
      skipped = true;
    } else if (onWorkers) {
      lr = this.rateOf(state);
      const scale = clipScale(gradNorm, this.options.clipNorm);
      this.sendUpdate({ step: state.step, lr, scale });
    }
    const stepMs = performance.now() - state.started;
    const trace = this.options.trace
      ? assembleTrace(await this.cluster.takeTrace(), this.plan.workers, state.origin)
      : undefined;
    if (this.current !== state) return;
    this.current = null;
    state.resolve({ loss, grads, gradNorm, lr, skipped, timings: { stepMs }, ...(trace ? { trace } : {}) });
  }

  // Note [deferred update]
  // With the optimizer on the workers, a step resolves as soon as its loss and every parameter's
  // sum of squares are in: the coordinator then knows the global norm, the clipping factor and that
  // everything is finite, which is all the update depends on. The update itself goes to every host
  // on its data port, behind the step's data and ahead of the next step's start, so no host can
  // start the next step with old parameters, and the step does not wait for it. This took two
  // control round trips (prepare on every worker, then commit) off every step's critical path:
  // about 1.4 ms of a 3.8 ms data-parallel step. Each host checks it holds every gradient, updates
  // in place (a copy of a replicated parameter first waits for contributions still on their way:
  // Host.applyUpdate), and acknowledges with an 'updated' report. Everything that reads or writes
  // parameters or optimizer state (getParams, setParams, the optimizer state, stats) first waits for
  // those acknowledgements, so it sees the update. A failed update (phase 'update') breaks the
  // runtime: its hosts may now disagree about the parameters, so the next call rejects with it. A
  // host that refuses the update message itself reports that as the update's failure too.

  /**
   * The rate of a step's update: the step's own, else the schedule's, else the optimizer's. Checked
   * before the update is sent: the step rejects instead, and the workers drop its gradients.
   */
  private rateOf(state: StepState): number {
    if (state.lr !== undefined) return state.lr;
    const schedule = this.options.lrSchedule;
    if (schedule === undefined) return this.baseLr!;
    const update = this.updates + 1;
    return checkLr(schedule(update), `step ${state.step}: lrSchedule(${update})`);
  }

  /** Sends a step's update to every host and tracks their acknowledgements (Note [deferred update]). */
  private sendUpdate(u: StepUpdate): void {
    let settle!: (err: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === null ? resolve() : reject(err));
    });
    // Awaited by the next control call; a failure nobody awaits is not an unhandled rejection.
    done.catch(() => {});
    const timeoutMs = this.stepTimeoutMs;
    const timer = setTimeout(() => {
      const err = new StepTimeoutError(
        `the update of step ${u.step} was not acknowledged by ${pending.remaining} of ${this.plan.workers} workers within ${timeoutMs} ms`,
        { step: u.step },
      );
      this.broken ??= err;
      pending.settle(err);
    }, timeoutMs);
    timer.unref();
    const pending: PendingUpdate = {
      step: u.step,
      remaining: this.plan.workers,
      done,
      settle: (err) => {
        clearTimeout(timer);
        if (this.pending === pending) this.pending = null;
        settle(err);
      },
    };
    this.pending = pending;
    this.updates++;
    this.cluster.update(u);
  }

  /** Waits until the last step's update is applied on every host; rejects if it failed. */
  private async settled(what: string): Promise<void> {
    if (this.pending !== null) await this.pending.done.catch(() => {});
    if (this.broken) throw this.brokenError(what);
  }

  private brokenError(what: string): WorkerError {
    const cause = this.broken!;
    return new WorkerError(
      `${what}: the runtime failed earlier and cannot continue: ${cause.message}`,
      cause instanceof BackflowError ? cause.context : {},
      { cause },
    );
  }

  /** Fails the step in flight (if any); a dead worker also breaks the runtime for good. */
  private async fail(error: Error, fatal: boolean): Promise<void> {
    if (fatal) {
      this.broken ??= error;
      this.pending?.settle(error);
    }
    const state = this.current;
    this.current = null;
    if (state !== null) state.reject(error);
    if (!fatal && !this.closed) await this.cluster.reset().catch(() => {});
  }

  private async timeout(state: StepState): Promise<void> {
    if (this.current !== state) return;
    this.current = null;
    let waiting: WaitingList = Object.assign([], { silent: [] });
    try {
      waiting = await this.cluster.waiting();
    } catch {
      // A host that cannot answer is itself the reason.
    }
    const lines = waiting
      .slice(0, 20)
      .map(
        (w) =>
          `  worker ${w.worker}: ${w.node} (replica ${w.replica}, microbatch ${w.mb}) waits for ${w.waitingFor}: ${w.have}/${w.need}${w.from.length > 0 ? ` from ${w.from.join(', ')}` : ''}`,
      );
    // Hosts that did not answer in time: say so, rather than "nothing missing".
    lines.push(...waiting.silent.map((why) => `  ${why}`));
    state.reject(
      new StepTimeoutError(
        `step ${state.step} did not finish within ${this.stepTimeoutMs} ms; still missing:\n${lines.join('\n') || '  (no host reported anything missing)'}`,
        {
          step: state.step,
          waiting,
        },
      ),
    );
    await this.cluster.reset().catch(() => {});
  }

  async getParams(): Promise<Record<string, Tensor>> {
    this.assertOpen('getParams');
    await this.settled('getParams');
    const values = await this.cluster.getParams();
    return Object.fromEntries([...values].map(([id, t]) => [label(this.graph.nodes[id]!), t]));
  }

  async setParams(params: TensorMap): Promise<void> {
    this.assertOpen('setParams');
    await this.settled('setParams');
    const values = checkedParams(this.plan, params, true);
    await this.cluster.setParams(values);
  }

  /** The optimizer state of every parameter, gathered from the workers that own them (for checkpoints). */
  async getOptimizerState(): Promise<OptimizerCheckpoint> {
    this.assertOpen('getOptimizerState');
    await this.settled('getOptimizerState');
    return this.cluster.getOptimizerState();
  }

  /** Restores optimizer state saved by `getOptimizerState`; the update count continues from its step. */
  async setOptimizerState(state: OptimizerCheckpoint): Promise<void> {
    this.assertOpen('setOptimizerState');
    await this.settled('setOptimizerState');
    await this.cluster.setOptimizerState(state);
    this.updates = state.step;
  }

  /** Updates sent so far (the optimizer's step count). */
  get updateCount(): number {
    return this.updates;
  }

  /** Per-host counters: tasks run, local and remote messages, copies, dropped messages. */
  async stats(): Promise<HostStats[]> {
    await this.settled('stats');
    return this.cluster.stats();
  }

  setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void> {
    return this.cluster.setFailpoints(failpoints);
  }

  /** Stops every worker; idempotent. A step in flight rejects with RuntimeClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const state = this.current;
    this.current = null;
    state?.reject(
      new RuntimeClosedError(`step ${state.step}: the runtime was closed during the step`, {
        step: state.step,
      }),
    );
    await this.cluster.close();
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new RuntimeClosedError(`${what}: the runtime is closed`);
  }
}

export function createRuntime(graph: Graph, options: RuntimeOptions): Promise<Runtime> {
  return Runtime.create(graph, options);
}

function checkedParams(plan: Plan, params: TensorMap, partial = false): Map<number, Tensor> {
  const out = new Map<number, Tensor>();
  for (const node of plan.graph.params()) {
    if (partial && params[node.name!] === undefined) continue;
    // Checked, not copied: every cluster's setParams gives the hosts copies (the caller keeps its tensors).
    out.set(node.id, paramValue(node, params));
  }
  for (const name of Object.keys(params)) {
    const node = plan.graph.names().get(name);
    if (node === undefined || plan.graph.nodes[node]!.op !== 'param') {
      throw new InputError(`setParams: '${name}' is not a parameter of the graph`, {
        node: name,
        expected: plan.graph.params().map((n) => n.name),
      });
    }
  }
  return out;
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
function firstAnomaly(reports: Extract<Report<Tensor>, { kind: 'anomaly' }>[], graph: Graph): Anomaly | null {
  if (reports.length === 0) return null;
  const rank = (r: (typeof reports)[number]) => (r.phase === 'forward' ? r.node : graph.size * 2 - r.node);
  const first = [...reports].sort((a, b) => rank(a) - rank(b) || a.replica - b.replica || a.mb - b.mb)[0]!;
  const node = graph.nodes[first.node]!;
  return { node: label(node), op: node.op, microbatch: first.mb, replica: first.replica, phase: first.phase };
}

function workerError(worker: number, e: ErrorReport): WorkerError {
  const where = [
    `worker ${worker}`,
    e.context.node !== undefined ? `node ${e.context.node}${e.context.op ? ` (${e.context.op})` : ''}` : '',
    e.context.phase ? `${e.context.phase}` : '',
    e.context.microbatch !== undefined ? `microbatch ${e.context.microbatch}` : '',
    e.context.replica !== undefined ? `replica ${e.context.replica}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const cause = Object.assign(new Error(e.message), {
    name: e.name,
    stack: e.stack,
    code: e.code,
    ...e.fields,
  });
  return new WorkerError(`${e.name}: ${e.message} [${where}]`, { ...e.context, worker, cause: e }, { cause });
}
