import { join } from 'node:path';
import type { Batches, DataCursor, Dataset } from '../data/dataset.ts';
import { BusyError, InputError } from '../errors.ts';
import type { Graph } from '../graph/graph.ts';
import type { OptimizerSpec } from '../optim/spec.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../runtime/runtime.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Trace } from '../trace/trace.ts';
import { own } from '../util/names.ts';
import { lossCurveSvg, terminalChart } from './chart.ts';
import {
  CHECKPOINT_FILE,
  type Checkpoint,
  hasCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from './checkpoint.ts';
import { checkHistory, headerFields } from './checkpoint-header.ts';
import { type EvalResult, evaluateClassifier } from './evaluate.ts';
import { checkFitOptions } from './fit-checks.ts';
import { ProgressBar, type ProgressStream } from './progress.ts';
import {
  checkRestarts,
  type Failure,
  isWorkerFault,
  mayRestart,
  type RestartEvent,
  type RestartOptions,
  restartLimitError,
  restartWarning,
} from './restarts.ts';

/**
 * A Trainer's options: the runtime's (`RuntimeOptions`, with 2 workers and Adam by default), the
 * feed names, and restarts.
 */
export interface TrainerOptions extends Omit<RuntimeOptions, 'workers' | 'optimizer'> {
  /** Worker threads (default 2). */
  workers?: number;
  /** Default: Adam with lr 1e-3. */
  optimizer?: OptimizerSpec;
  /** The feed name of the examples (default 'x'). */
  x?: string;
  /** The feed name of the labels (default 'y'). */
  y?: string;
  /** The output whose largest entry is the predicted class, for accuracy (default 'logits'). */
  logits?: string;
  /**
   * When a worker dies or hangs, close the runtime, start a new one from the last checkpoint (or the
   * state the fit started from) and go on; more than `max` restarts within `withinMs` fail the fit
   * with a RestartLimitError (Note [bounded restarts]). Default: no restarts.
   */
  restarts?: RestartOptions;
}

/** One training step, as `History.steps` records it. */
export interface StepRecord {
  /** The step's number, from 1, over the whole run. */
  step: number;
  /** The epoch it belongs to, from 0. */
  epoch: number;
  /** The batch's mean loss. */
  loss: number;
  /** The learning rate of its update (null when the optimizer does not run on the workers). */
  lr: number | null;
  /** The global gradient norm before clipping. */
  gradNorm: number;
}

/** One epoch, as `History.epochs` records it. */
export interface EpochRecord {
  /** The epoch's number, from 0. */
  epoch: number;
  /** Steps trained in it (in this process, after a resume). */
  steps: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  /** The loss over evalData at its end (null without evalData). */
  evalLoss: number | null;
  /** The accuracy over evalData at its end (null without evalData or a logits output). */
  evalAccuracy: number | null;
  /** Training examples per second over its steps (evaluation excluded). */
  samplesPerSec: number;
  /** Seconds its steps took (evaluation excluded). */
  seconds: number;
}

/** What a Trainer's fits recorded: every epoch and every step. */
export interface History {
  /** One record per epoch. */
  epochs: EpochRecord[];
  /** One record per step. */
  steps: StepRecord[];
}

/** Hooks into a fit. */
export interface FitCallbacks {
  /** After each step; return 'stop' to end training. */
  onStep?(record: StepRecord): 'stop' | undefined;
  /** After each epoch (and its evaluation); return 'stop' to end training. */
  onEpoch?(record: EpochRecord): 'stop' | undefined;
  /** After a restart (option `restarts`), with the new runtime started; awaited before training goes on. */
  onRestart?(event: RestartEvent): void | Promise<void>;
}

/**
 * How `Trainer.fit` trains: epochs and batches, evaluation, progress, early stopping, checkpoints
 * and interruption.
 */
export interface FitOptions {
  /** Epochs in all (counting epochs before a resume). */
  epochs: number;
  /** Examples per step (every replica and microbatch together). */
  batchSize: number;
  /** Skip a last batch smaller than batchSize (default true: every step has the same shards). */
  dropLast?: boolean;
  /** Draw a new order of the examples every epoch (default true). */
  shuffle?: boolean;
  /** Seeds the data order (default: the trainer's seed). */
  seed?: number;
  /** Evaluated at the end of every epoch. */
  evalData?: Dataset;
  /** Show progress (default true): redrawn in place on a terminal, a plain line every few seconds elsewhere. */
  progress?: boolean | ProgressStream;
  /** Called after each step, epoch and restart. */
  callbacks?: FitCallbacks;
  /** Stop when the monitored figure has not improved by minDelta for `patience` epochs. */
  earlyStop?: {
    /** Epochs without improvement before stopping. */
    patience: number;
    /** What to watch (default 'evalLoss' with evalData, else 'loss'); accuracy improves upwards. */
    monitor?: 'loss' | 'evalLoss' | 'evalAccuracy';
    /** The smallest change that counts as an improvement (default 0). */
    minDelta?: number;
  };
  /** Where checkpoints go: every `checkpointEvery` steps, at each epoch's end, and where training stops. */
  checkpointDir?: string;
  /** Save a checkpoint every this many steps (with checkpointDir). */
  checkpointEvery?: number;
  /** Continue from the checkpoint in checkpointDir, if there is one. */
  resume?: boolean;
  /** Stop after this many steps in all (counting steps before a resume). */
  maxSteps?: number;
  /** Once aborted, stop after the step in flight; with checkpointDir, save a checkpoint first. */
  signal?: AbortSignal;
}

/**
 * Trains a graph over the actor runtime: batches from a dataset, one runtime step per batch with the
 * optimizer running where the parameters live, progress, per-epoch metrics and evaluation,
 * callbacks, early stopping, and checkpoints a run can resume from bitwise identically.
 */
export class Trainer {
  /** The graph it trains. */
  readonly graph: Graph;
  /** The options it was made with. */
  readonly options: TrainerOptions;
  /** Every epoch and step trained so far. */
  readonly history: History = { epochs: [], steps: [] };
  private runtime: Runtime | null = null;
  private stepCount = 0;
  /** The checkpoint this fit last wrote or resumed from: where a restart goes back to. */
  private lastSaved: { dir: string; step: number } | null = null;
  private fitting = false;
  /** With the `trace` option: the trace of the last step. */
  lastTrace: Trace | null = null;

  constructor(graph: Graph, options: TrainerOptions = {}) {
    this.graph = graph;
    this.options = options;
    if (options.restarts !== undefined) checkRestarts(options.restarts, 'Trainer');
  }

  /** The runtime, started on first use. */
  async start(): Promise<Runtime> {
    this.runtime ??= await createRuntime(this.graph, {
      ...this.options,
      workers: this.options.workers ?? 2,
      optimizer: this.options.optimizer ?? { name: 'adam', lr: 1e-3 },
    });
    return this.runtime;
  }

  /** Steps trained so far (counting steps before a resume). */
  get steps(): number {
    return this.stepCount;
  }

  /** The current parameters, by name, from the workers that hold them. */
  async params(): Promise<Record<string, Tensor>> {
    return (await this.start()).getParams();
  }

  /** Loss and accuracy over a dataset with the current parameters. */
  async evaluate(data: Dataset): Promise<EvalResult> {
    const params = await this.params();
    return evaluateClassifier(this.graph, params, data, {
      x: this.options.x ?? 'x',
      y: this.options.y ?? 'y',
      loss: this.options.loss ?? 'loss',
      logits: this.options.logits ?? 'logits',
    });
  }

  /**
   * Trains on `data` until `options.epochs` (or a stop: a callback, early stopping, `maxSteps`, an
   * aborted signal), evaluating, checkpointing and restarting as asked; resolves with the history. Its
   * options are checked before any worker starts; a fit while another runs is a BusyError.
   */
  async fit(data: Dataset, options: FitOptions): Promise<History> {
    if (this.fitting)
      throw new BusyError('fit: this Trainer is already fitting; await that fit() first', { call: 'fit' });
    checkFitOptions(options);
    this.fitting = true;
    try {
      return await this.train(data, options);
    } finally {
      this.fitting = false;
    }
  }

  private async train(data: Dataset, options: FitOptions): Promise<History> {
    await this.start();
    const dir = options.checkpointDir;
    let cursor: DataCursor | null = null;
    this.lastSaved = null;
    if (options.resume && dir !== undefined && (await hasCheckpoint(dir))) {
      cursor = await this.restore(await this.load(dir));
      this.lastSaved = { dir, step: this.stepCount };
    }
    const order = {
      batchSize: options.batchSize,
      shuffle: options.shuffle ?? true,
      dropLast: options.dropLast ?? true,
      seed: options.seed ?? this.options.seed ?? 0,
    };
    const batches = (from: DataCursor | null) =>
      data.batches({ ...order, ...(from ? { cursor: from } : {}) });
    const limit = this.options.restarts;
    if (limit === undefined) return this.epochs(batches(cursor), options);
    // Note [bounded restarts]
    const origin = this.lastSaved === null ? await this.snapshot(cursor) : null;
    const failures: Failure[] = [];
    for (;;) {
      try {
        if (failures.length > 0) cursor = await this.restart(failures, limit, origin, options);
        return await this.epochs(batches(cursor), options);
      } catch (error) {
        if (!isWorkerFault(error)) throw error;
        failures.push({ error, step: this.stepCount, at: performance.now() });
        if (!mayRestart(failures, limit)) {
          await this.close();
          throw restartLimitError(failures, limit);
        }
      }
    }
  }

  /** Trains until `options.epochs` (or a stop), checkpointing as asked. */
  private async epochs(batches: Batches, options: FitOptions): Promise<History> {
    const runtime = await this.start();
    const x = this.options.x ?? 'x';
    const y = this.options.y ?? 'y';
    let best = Number.NaN;
    let stale = 0;
    // A run resumed at its maxSteps runs no further step.
    let stop = options.maxSteps !== undefined && this.stepCount >= options.maxSteps;
    while (!stop && !options.signal?.aborted && batches.epoch < options.epochs) {
      const epoch = batches.epoch;
      const bar = makeBar(options.progress, batches, `epoch ${epoch + 1}/${options.epochs}`);
      const started = performance.now();
      let lossSum = 0;
      let steps = 0;
      let samples = 0;
      for (const batch of batches) {
        // The step random ops key their draws with counts the run's steps, across resumes (Note [run context]).
        const out = await runtime.step({ [x]: batch.x, [y]: batch.y }, { step: this.stepCount + 1 });
        if (out.trace !== undefined) this.lastTrace = out.trace;
        this.stepCount++;
        steps++;
        samples += batch.indices.length;
        lossSum += out.loss;
        const record: StepRecord = {
          step: this.stepCount,
          epoch,
          loss: out.loss,
          lr: out.lr,
          gradNorm: out.gradNorm,
        };
        this.history.steps.push(record);
        // The running figure is the last step's loss; the epoch's line at the end shows the mean.
        bar?.update(steps, {
          'step loss': out.loss,
          'samples/s': Math.round(samples / ((performance.now() - started) / 1000)),
        });
        if (options.callbacks?.onStep?.(record) === 'stop') stop = true;
        if (options.maxSteps !== undefined && this.stepCount >= options.maxSteps) stop = true;
        if (options.signal?.aborted === true) stop = true;
        // Stopping mid-epoch (at maxSteps, by a callback, by the signal) saves where it stops, as the
        // cadence does (the epoch's record comes after): a resume would redo the steps since the last.
        if (
          options.checkpointDir !== undefined &&
          (stop || (options.checkpointEvery !== undefined && this.stepCount % options.checkpointEvery === 0))
        ) {
          await this.save(options.checkpointDir, batches);
        }
        if (stop) break;
      }
      const midEpoch = stop;
      const seconds = (performance.now() - started) / 1000;
      const evaluation = options.evalData ? await this.evaluate(options.evalData) : null;
      const record: EpochRecord = {
        epoch,
        steps,
        loss: steps === 0 ? Number.NaN : lossSum / steps,
        evalLoss: evaluation?.loss ?? null,
        evalAccuracy: evaluation?.accuracy ?? null,
        samplesPerSec: samples / seconds,
        seconds,
      };
      this.history.epochs.push(record);
      bar?.finish({
        'mean loss': record.loss,
        ...(record.evalAccuracy !== null ? { 'eval acc': `${(record.evalAccuracy * 100).toFixed(2)}%` } : {}),
        'samples/s': Math.round(record.samplesPerSec),
      });
      if (options.callbacks?.onEpoch?.(record) === 'stop') stop = true;
      if (options.earlyStop !== undefined) {
        const monitor = options.earlyStop.monitor ?? (evaluation ? 'evalLoss' : 'loss');
        const value =
          monitor === 'loss' ? record.loss : monitor === 'evalLoss' ? record.evalLoss : record.evalAccuracy;
        if (value === null) throw new InputError(`earlyStop monitors ${monitor}, which needs evalData`);
        const better =
          monitor === 'evalAccuracy' ? (a: number, b: number) => a > b : (a: number, b: number) => a < b;
        const delta = options.earlyStop.minDelta ?? 0;
        if (Number.isNaN(best) || better(value, monitor === 'evalAccuracy' ? best + delta : best - delta)) {
          best = value;
          stale = 0;
        } else if (++stale >= options.earlyStop.patience) stop = true;
      }
      if (options.checkpointDir !== undefined && !midEpoch && steps > 0)
        await this.save(options.checkpointDir, batches);
    }
    return this.history;
  }

  /** Saves parameters, optimizer state, the data cursor (with its RNG state), the step and the history. */
  async save(dir: string, batches: Batches): Promise<void> {
    await saveCheckpoint(dir, await this.snapshot(batches.cursor), { createDir: true });
    this.lastSaved = { dir, step: this.stepCount };
  }

  /** Everything a checkpoint holds, taken now (tensors are copies: the workers update theirs in place). */
  private async snapshot(cursor: DataCursor | null): Promise<Checkpoint> {
    const runtime = await this.start();
    return {
      step: this.stepCount,
      params: await runtime.getParams(),
      optimizer: await runtime.getOptimizerState(),
      rng: cursor === null ? {} : { data: cursor.rng },
      cursor,
      meta: { history: { epochs: [...this.history.epochs], steps: [...this.history.steps] } },
    };
  }

  private async load(dir: string): Promise<Checkpoint> {
    const expect = Object.fromEntries(this.graph.params().map((n) => [n.name!, n.shape as number[]]));
    const ckpt = await loadCheckpoint(dir, { expect });
    // Checked before anything is restored: the header's checksum does not vouch for it.
    const history = checkHistory(own(ckpt.meta ?? {}, 'history'), headerFields(join(dir, CHECKPOINT_FILE)));
    return { ...ckpt, meta: { ...ckpt.meta, history } };
  }

  /** The state of a checkpoint: a file's (history checked by `load`), or the fit's start, in memory. */
  private async restore(ckpt: Checkpoint): Promise<DataCursor | null> {
    const runtime = await this.start();
    const history = (ckpt.meta?.history ?? null) as History | null;
    await runtime.setParams(ckpt.params);
    if (ckpt.optimizer !== null) await runtime.setOptimizerState(ckpt.optimizer);
    this.stepCount = ckpt.step;
    if (history !== null) {
      // By a loop: spreading a long run's history as arguments overflows the stack.
      this.history.epochs.length = 0;
      this.history.steps.length = 0;
      for (const e of history.epochs) this.history.epochs.push(e);
      for (const s of history.steps) this.history.steps.push(s);
    }
    return ckpt.cursor;
  }

  /** Note [bounded restarts]: a new runtime in the state of the last checkpoint, or of the fit's start. */
  private async restart(
    failures: readonly Failure[],
    limit: RestartOptions,
    origin: Checkpoint | null,
    options: FitOptions,
  ): Promise<DataCursor | null> {
    const saved = this.lastSaved;
    const failure = failures[failures.length - 1]!;
    await this.close();
    const cursor = await this.restore(saved !== null ? await this.load(saved.dir) : origin!);
    const event: RestartEvent = {
      restart: failures.length,
      cause: failure.error,
      failedAfter: failure.step,
      resumedAt: this.stepCount,
      checkpointDir: saved?.dir ?? null,
    };
    const warn = this.options.onWarning ?? ((m: string) => process.emitWarning(m, 'BackflowWarning'));
    warn(restartWarning(event, limit));
    await options.callbacks?.onRestart?.(event);
    return cursor;
  }

  /** The training loss per step as an SVG chart. */
  lossCurveSvg(title = 'training loss'): string {
    return lossCurveSvg(
      this.history.steps.map((s) => ({ step: s.step, loss: s.loss })),
      { title, xLabel: 'step', yLabel: 'loss' },
    );
  }

  /** The training loss per step as a small terminal chart. */
  lossChart(width = 60, height = 8): string {
    return terminalChart(
      this.history.steps.map((s) => s.loss),
      { width, height },
    );
  }

  /** Stops the runtime and its workers; the next call starts a new one. */
  async close(): Promise<void> {
    await this.runtime?.close();
    this.runtime = null;
  }
}

function makeBar(progress: FitOptions['progress'], batches: Batches, label: string): ProgressBar | null {
  if (progress === false) return null;
  const stream = progress === true || progress === undefined ? undefined : progress;
  return new ProgressBar({
    total: batches.batchesPerEpoch,
    label,
    unit: 'steps',
    ...(stream ? { stream } : {}),
  });
}
