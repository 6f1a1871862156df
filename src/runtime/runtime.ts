import type { Failpoint } from '../actor/failpoint.ts';
import type { HostStats } from '../actor/host.ts';
import { bindFeeds, paramValues, type TensorMap } from '../autodiff/forward.ts';
import { splitBatch } from '../autodiff/microbatch.ts';
import { warnDisconnected } from '../autodiff/plan.ts';
import { BackflowError, RuntimeClosedError, WorkerError } from '../errors.ts';
import { checkGraph } from '../graph/check.ts';
import { type Graph, label } from '../graph/graph.ts';
import { initParams } from '../graph/params.ts';
import type { OptimizerCheckpoint } from '../optim/optimizer.ts';
import { clipScale, makeOptimizer } from '../optim/spec.ts';
import { compile, type Plan } from '../partition/plan.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { assembleTrace, wallClock } from '../trace/recorder.ts';
import { checkWorkerCount, hostLimits } from './budget.ts';
import type { Cluster, ClusterEvents, WaitingList } from './cluster.ts';
import { CLUSTERS } from './clusters.ts';
import { DeferredUpdates } from './deferred-update.ts';
import { Inference, type InferOptions, inferMessages, inferRequest } from './infer.ts';
import { checkRuntimeOptions, type RuntimeOptions } from './options.ts';
import { hostActions, scheduledOptions } from './pipeline.ts';
import { handleReport, type ReportTarget } from './reports.ts';
import {
  checkStepOptions,
  feedMessages,
  isComplete,
  rateOf,
  type Settle,
  type StepLaunch,
  type StepOptions,
  type StepResult,
  type StepRules,
  type StepState,
  stepResult,
  stepRules,
  stepStart,
  timeoutError,
} from './step.ts';
import { loadUserOps } from './user-ops.ts';

export type { RuntimeOptions } from './options.ts';

export type { StepOptions, StepResult } from './step.ts';

/**
 * The coordinator: compiles the plan, starts the hosts, and runs steps. A step splits the batch into
 * shards, feeds the input actors, and resolves when every shard's loss and every parameter's
 * gradient has been reported; an inference step (`infer`) runs the forward only and resolves with
 * the outputs it asked for. Any failure rejects it with a typed error. Parameters change only
 * through `setParams` and, with an optimizer, through the update that follows a step that succeeded.
 */
export class Runtime {
  /** The compiled plan the hosts run: where every node lives (printable with `printPlan`). */
  readonly plan: Plan;
  /** The graph it runs. */
  readonly graph: Graph;
  private readonly cluster: Cluster;
  private readonly options: RuntimeOptions;
  /** What every step is fed, waits for and finishes with. */
  private readonly rules: StepRules;
  private stepIndex = 0;
  /** The last training step's number for random ops (Note [run context]). */
  private trainingStep = 0;
  private current: StepState | Inference | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: Error | null = null;
  /** An envelope refused between steps, which fails the next one (Note [refused envelopes]). */
  private refusal: Error | null = null;
  /** A step's deadline, and the optimizer's own learning rate (resolved once). */
  private readonly stepTimeoutMs: number;
  private readonly baseLr: number | null;
  /** The updates sent, the last one until every host has applied it (Note [deferred update]). */
  private readonly updates: DeferredUpdates;
  /** What the report handlers see of this runtime. */
  private readonly reports: ReportTarget;

  private constructor(plan: Plan, cluster: Cluster, options: RuntimeOptions) {
    this.plan = plan;
    this.graph = plan.graph;
    this.cluster = cluster;
    this.options = options;
    this.rules = stepRules(plan, options);
    this.stepTimeoutMs = options.stepTimeoutMs ?? 30_000;
    const spec = options.optimizer;
    this.baseLr = spec === undefined ? null : (spec.lr ?? makeOptimizer(spec).lr);
    this.updates = new DeferredUpdates(cluster, plan.workers, this.stepTimeoutMs, (err) => {
      this.broken ??= err;
    });
    this.reports = {
      microbatches: this.rules.microbatches,
      localUpdates: this.rules.localUpdates,
      updates: this.updates,
      inFlight: (step) => (this.current?.step === step && 'losses' in this.current ? this.current : null),
      inference: (step) => (this.current?.step === step && 'receive' in this.current ? this.current : null),
      maybeFinish: (state) => this.maybeFinish(state),
      fail: (error, fatal) => void this.fail(error, fatal),
      refused: (error) => {
        if (this.current !== null) void this.fail(error, false);
        else this.refusal ??= error;
      },
    };
  }

  /**
   * Checks the graph and options, starts the hosts (worker threads, in-process hosts or node
   * processes) and hands each its part of the plan; `createRuntime` calls this. Rejects with a
   * typed error before any worker starts when a check fails.
   */
  static async create(graph: Graph, options: RuntimeOptions): Promise<Runtime> {
    // Invariant 8: options and the graph are checked before any worker starts, the graph's ops first
    // (they may be the user's). So is the optimizer: an update the workers refuse would only break the
    // runtime after the step it follows.
    const { mode, nodes } = checkRuntimeOptions(options);
    checkWorkerCount(options, CLUSTERS[mode].sameThread);
    const ops = await loadUserOps(graph, options.ops ?? [], !CLUSTERS[mode].sameThread);
    if (options.validate !== false) checkGraph(graph);
    const { schedule, compileOptions } = scheduledOptions(options);
    const plan = compile(graph, compileOptions);
    warnDisconnected(graph, plan.grad, options.onWarning);
    const actions = schedule === null ? null : hostActions(plan, schedule.schedule);
    // Note [memory budget]: a plan over budget is refused before any parameter is made.
    const pipeline = schedule === null || actions === null ? null : { schedule: schedule.schedule, actions };
    const limits = hostLimits(plan, options, pipeline);
    const params = options.params ?? initParams(graph, options.seed ?? 0);
    const values = paramValues(plan.graph, params, 'createRuntime: params');
    let runtime: Runtime | null = null;
    const events: ClusterEvents = {
      report: (worker, report) => runtime !== null && handleReport(runtime.reports, worker, report),
      failure: (error) => runtime?.fail(error, true),
      failpoint: (worker, action, task) => options.onFailpoint?.(worker, action, task),
    };
    const start = await CLUSTERS[mode].load();
    const cluster: Cluster = await start(plan, events, {
      ops,
      limits,
      ...(options.pool !== undefined ? { pool: options.pool } : {}),
      ...(options.shuffleSeed !== undefined ? { shuffleSeed: options.shuffleSeed } : {}),
      ...(nodes !== undefined ? { cluster: nodes } : {}),
    });
    // Whatever fails from here on stops every worker the cluster started.
    try {
      runtime = new Runtime(plan, cluster, options);
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
      checkStepOptions(options);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue<StepResult>('step', (step, settle) => {
      const { microbatches } = this.rules;
      const shards = splitBatch(this.graph, feeds, {
        replicas: this.plan.replicas,
        microbatches,
        storage: this.cluster.feedStorage,
      });
      this.trainingStep = options.step ?? this.trainingStep + 1;
      // Note [local update]: the hosts need the update's rate as the step starts.
      const localLr = this.rules.localUpdates
        ? rateOf({ lr: options.lr, step }, this.options.lrSchedule, this.baseLr!, this.updates.count + 1)
        : undefined;
      const state: StepState = {
        step,
        lr: options.lr,
        ...(localLr !== undefined ? { localLr } : {}),
        losses: new Map(),
        grads: new Map(),
        inputGrads: new Map(),
        inputReports: 0,
        bindings: this.plan.inputGrads.length > 0 ? bindFeeds(this.graph.inputs(), feeds) : new Map(),
        sumsq: new Map(),
        anomalies: [],
        finishing: false,
        expectedLosses: shards.length,
        ...settle,
        started: performance.now(),
        origin: wallClock(),
        shards: shards.map((s) => ({ replica: s.replica, mb: s.mb, scale: s.scale })),
      };
      const start = stepStart(step, microbatches, shards, this.trainingStep, localLr, this.options.clipNorm);
      return { state, start, feeds: feedMessages(this.rules, step, shards) };
    });
  }

  /**
   * Runs the forward only, in evaluation mode, on the hosts (Note [inference steps]): the values of
   * `outputs` (default: every output of the graph but the loss) for the whole batch.
   */
  infer(feeds: TensorMap, options: InferOptions = {}): Promise<Record<string, Tensor>> {
    return this.enqueue<Record<string, Tensor>>('infer', (step, settle) => {
      const request = inferRequest(this.rules, feeds, options);
      // Its trace is taken and dropped: the next step's trace is that step's own.
      const resolve = this.options.trace
        ? (v: Record<string, Tensor>) =>
            void this.cluster.takeTrace().then(() => settle.resolve(v), settle.reject)
        : settle.resolve;
      const state = new Inference(step, request, this.rules.microbatches, resolve, settle.reject);
      return { state, ...inferMessages(this.rules, request, step) };
    });
  }

  /**
   * Runs a step after those before it: `begin` makes its state (settled by `settle`, which also
   * disarms its deadline) and the messages that start it on the hosts.
   */
  private enqueue<R>(what: string, begin: (step: number, settle: Settle<R>) => StepLaunch): Promise<R> {
    const run = this.queue.then(() => {
      if (this.closed) throw new RuntimeClosedError(`${what}: the runtime is closed`);
      if (this.broken) throw this.brokenError(what);
      if (this.refusal !== null) {
        // An envelope refused between steps fails the next one (Note [refused envelopes]).
        const refusal = this.refusal;
        this.refusal = null;
        throw refusal;
      }
      return new Promise<R>((resolve, reject) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const disarm = () => {
          clearTimeout(timer);
          if (this.current === begun.state) this.current = null;
        };
        const begun = begin(++this.stepIndex, {
          resolve: (r) => {
            disarm();
            resolve(r);
          },
          reject: (e) => {
            disarm();
            reject(e);
          },
        });
        this.current = begun.state;
        timer = setTimeout(() => void this.timeout(begun.state), this.stepTimeoutMs);
        this.cluster.startStep(begun.start);
        for (const [w, messages] of begun.feeds) this.cluster.send(w, messages);
      });
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private maybeFinish(state: StepState): void {
    if (state.finishing || !isComplete(state, this.rules)) return;
    state.finishing = true;
    void this.finish(state).catch((err: unknown) => {
      if (this.current === state) this.current = null;
      state.reject(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** Resolves a complete step; with the optimizer on the workers, sends its update first (Note [deferred update]). */
  private async finish(state: StepState): Promise<void> {
    const { loss, grads, gradNorm, skipped } = stepResult(state, this.rules);
    let lr: number | null = null;
    if (!skipped && state.localLr !== undefined) {
      // Note [local update]: every host decided the same and applies it; their acknowledgements count.
      lr = state.localLr;
      this.updates.expect(state.step);
    } else if (!skipped && this.rules.onWorkers) {
      lr = rateOf(state, this.options.lrSchedule, this.baseLr!, this.updates.count + 1);
      this.updates.send({ step: state.step, lr, scale: clipScale(gradNorm, this.options.clipNorm) });
    }
    const stepMs = performance.now() - state.started;
    const trace = this.options.trace
      ? assembleTrace(await this.cluster.takeTrace(), this.plan.workers, state.origin)
      : undefined;
    if (this.current !== state) return;
    this.current = null;
    state.resolve({ loss, grads, gradNorm, lr, skipped, timings: { stepMs }, ...(trace ? { trace } : {}) });
  }

  /** Waits until the last step's update is applied on every host; rejects if it failed. */
  private async settled(what: string): Promise<void> {
    await this.updates.settled();
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
      this.updates.abort(error);
    }
    const state = this.current;
    this.current = null;
    if (state !== null) state.reject(error);
    if (!fatal && !this.closed) await this.reset(state, error);
  }

  /**
   * Resets the hosts after a failed step. Under Note [local update] a host may have applied the
   * failed step's update before the failure (a refused envelope, a lost message): its parameters then
   * no longer match the step's rejection, and the runtime breaks.
   */
  private async reset(state: StepState | Inference | null, error: Error): Promise<void> {
    const applied = await this.cluster.reset().catch(() => [] as number[]);
    if (state === null || !('losses' in state) || state.localLr === undefined) return;
    this.broken ??= this.updates.failedAfterApplied(state.step, applied, error);
  }

  /** A missed deadline fails the step; a host that does not answer then breaks the runtime (Note [silent hosts]). */
  private async timeout(state: StepState | Inference): Promise<void> {
    if (this.current !== state) return;
    this.current = null;
    let waiting: WaitingList = Object.assign([], { silent: [] });
    try {
      waiting = await this.cluster.waiting();
    } catch {
      // A host that cannot answer is itself the reason.
    }
    const error = timeoutError(state, waiting, this.stepTimeoutMs);
    if (waiting.silent.length === 0) {
      state.reject(error);
      await this.reset(state, error);
      return;
    }
    this.broken ??= error;
    this.updates.abort(error);
    state.reject(error);
    if (this.closed) return;
    for (const { worker } of waiting.silent) {
      const death = new WorkerError(
        `worker ${worker} was stopped: it did not answer after step ${state.step} missed its deadline`,
        { worker, step: state.step },
        { cause: error },
      );
      await this.cluster.stop(worker, death).catch(() => {});
    }
  }

  /**
   * The current value of every parameter by name, gathered from the workers that hold them, after
   * any update in flight.
   */
  async getParams(): Promise<Record<string, Tensor>> {
    this.assertOpen('getParams');
    await this.settled('getParams');
    const values = await this.cluster.getParams();
    return Object.fromEntries([...values].map(([id, t]) => [label(this.graph.nodeAt(id)), t]));
  }

  /**
   * Replaces the values of the named parameters (all or some) on every worker that holds them; the
   * caller keeps its tensors. A name that is not a parameter, or a tensor that does not fit it, is
   * refused with a typed error.
   */
  async setParams(params: TensorMap): Promise<void> {
    this.assertOpen('setParams');
    await this.settled('setParams');
    const values = paramValues(this.graph, params, 'setParams', true);
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
    this.updates.count = state.step;
  }

  /** Updates sent so far (the optimizer's step count). */
  get updateCount(): number {
    return this.updates.count;
  }

  /** Per-host counters: tasks run, local and remote messages, copies, dropped messages. */
  async stats(): Promise<HostStats[]> {
    await this.settled('stats');
    return this.cluster.stats();
  }

  /**
   * Fault injection, for tests of failure handling: makes the named node's task throw, exit, hang,
   * pause, drop or duplicate its messages, on every worker or one.
   */
  setFailpoints(failpoints: readonly (Failpoint & { worker?: number })[]): Promise<void> {
    return this.cluster.setFailpoints(failpoints);
  }

  /** Stops every worker; idempotent. A step in flight rejects with RuntimeClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.updates.abort(
      new RuntimeClosedError('the runtime was closed before every worker applied the last update'),
    );
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

/**
 * Starts a runtime for `graph`: the actor hosts on worker threads (by default), in this thread, or
 * on node processes (`cluster`), with the placement, replicas, schedule and optimizer of `options`.
 * The same as `Runtime.create`.
 */
export function createRuntime(graph: Graph, options: RuntimeOptions): Promise<Runtime> {
  return Runtime.create(graph, options);
}
