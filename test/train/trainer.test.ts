import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Dataset } from '../../src/data/dataset.ts';
import { blobs, spirals } from '../../src/data/synthetic.ts';
import { BusyError, InputError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { WorkerPool } from '../../src/runtime/pool.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { formatValue } from '../../src/train/progress.ts';
import { type FitOptions, type StepRecord, Trainer } from '../../src/train/trainer.ts';
import { run } from '../fixtures/train-run.ts';
import { rejected } from '../support/errors.ts';
import { expectBitwiseAll } from '../support/expect.ts';

const exec = promisify(execFile);
const fixture = join(import.meta.dirname, '../fixtures/train-run.ts');
const tsx = join(import.meta.dirname, '../../node_modules/.bin/tsx');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function child(dir: string, steps: number, resume: boolean) {
  const { stdout } = await exec(tsx, [fixture, dir, String(steps), resume ? 'resume' : 'fresh'], {
    timeout: 60_000,
  });
  return JSON.parse(stdout) as Awaited<ReturnType<typeof run>>;
}

describe('Trainer checkpoints', () => {
  it('10 steps, save, a new process, 10 more: bitwise equal to 20 steps in one go; leaving out the cursor or its RNG state breaks it', async () => {
    const straight = await run(null, 20, false);
    const dir = mkdtempSync(join(tmpdir(), 'backflow-ckpt-'));
    dirs.push(dir);
    const first = await child(dir, 10, false);
    expect(first.losses).toEqual(straight.losses.slice(0, 10));
    const saved = await loadCheckpoint(dir);
    const second = await child(dir, 20, true);
    expect(second.steps).toBe(20);
    expect(first.losses.concat(second.losses)).toEqual(straight.losses);
    expect(second.params).toEqual(straight.params);
    expect(second.optimizer).toEqual(straight.optimizer);
    expect(second.optimizerStep).toBe(20);

    // Without the data cursor, the run restarts the data order: the losses differ.
    await saveCheckpoint(dir, { ...saved, cursor: null });
    expect((await child(dir, 20, true)).losses).not.toEqual(straight.losses.slice(10));
    // With the cursor but another RNG state, the epoch's order differs.
    await saveCheckpoint(dir, { ...saved, cursor: { ...saved.cursor!, rng: new Rng(99).getState() } });
    expect((await child(dir, 20, true)).losses).not.toEqual(straight.losses.slice(10));
  });
});

describe('Trainer', () => {
  it('learns Gaussian blobs, evaluates each epoch, calls back, and stops early', async () => {
    const all = blobs({ perClass: 200, classes: 3, spread: 0.4, seed: 1 });
    const rows = new Rng(3).shuffle(Array.from({ length: 600 }, (_, i) => i));
    const whole = new Dataset(all.x, all.y);
    const train = whole.subset(rows.slice(0, 400));
    const test = whole.subset(rows.slice(400));
    const graph = mlpClassifier({ features: 2, hidden: [16], classes: 3, activation: 'tanh' });
    const trainer = new Trainer(graph, {
      mode: 'in-process',
      workers: 2,
      replicas: 2,
      params: initParams(graph, 4),
      optimizer: { name: 'adam', lr: 0.03 },
    });
    const seen: number[] = [];
    try {
      const history = await trainer.fit(train, {
        epochs: 60,
        batchSize: 32,
        evalData: test,
        progress: false,
        callbacks: { onEpoch: (e) => void seen.push(e.epoch) },
        earlyStop: { patience: 5, monitor: 'evalLoss', minDelta: 1e-3 },
      });
      expect(seen).toEqual(history.epochs.map((e) => e.epoch));
      expect(history.epochs[0]!.loss).toBeGreaterThan(history.epochs[history.epochs.length - 1]!.loss);
      expect(Math.max(...history.epochs.map((e) => e.evalAccuracy!))).toBeGreaterThan(0.9);
      expect(history.epochs.length).toBeLessThan(60);
      expect(trainer.lossCurveSvg()).toMatch(/^<svg/);
      expect(trainer.lossChart().split('\n').length).toBeGreaterThan(3);
    } finally {
      await trainer.close();
    }
  });
});

describe('Trainer with a loss output of another name', () => {
  it('evaluates the loss it trains (the loss option reaches the evaluation)', async () => {
    const all = blobs({ perClass: 40, classes: 2, spread: 0.4, seed: 2 });
    const data = new Dataset(all.x, all.y);
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 2]);
    const y = b.input('y', ['B']);
    const logits = b.output('logits', b.matmul(x, b.param('w', [2, 2])));
    b.output('xent', b.softmaxCrossEntropy(logits, y));
    const graph = b.build();
    const trainer = new Trainer(graph, {
      mode: 'in-process',
      workers: 1,
      loss: 'xent',
      params: initParams(graph, 1),
      optimizer: { name: 'sgd', lr: 0.1 },
    });
    try {
      const history = await trainer.fit(data, { epochs: 1, batchSize: 16, evalData: data });
      const evaluation = await trainer.evaluate(data);
      expect(history.epochs[0]!.evalLoss).toBe(evaluation.loss);
      expect(evaluation.accuracy).toBeGreaterThan(0);
    } finally {
      await trainer.close();
    }
  });
});

describe("Trainer's progress lines", () => {
  it("label the running figure 'step loss' (the last step's) and the epoch's closing one 'mean loss' (its steps' mean)", async () => {
    const all = blobs({ perClass: 24, classes: 2, spread: 0.4, seed: 5 });
    const data = new Dataset(all.x, all.y);
    const graph = mlpClassifier({ features: 2, hidden: [4], classes: 2, activation: 'tanh' });
    const trainer = new Trainer(graph, {
      mode: 'in-process',
      workers: 1,
      params: initParams(graph, 2),
      optimizer: { name: 'sgd', lr: 0.1 },
    });
    // Not a TTY: plain lines, the step count's at its end (3/3) and the epoch's closing one.
    const lines: string[] = [];
    const stream = {
      write: (chunk: string) => void lines.push(...chunk.split('\n').filter((l) => l !== '')),
    };
    try {
      const history = await trainer.fit(data, { epochs: 1, batchSize: 16, progress: stream });
      const losses = history.steps.map((s) => s.loss);
      expect(losses).toHaveLength(3);
      const figure = (line: string, label: string) => line.match(new RegExp(`  ${label} (\\S+)  `))?.[1];
      const running = lines.filter((l) => l.includes('step loss'));
      const closing = lines.filter((l) => l.includes('mean loss'));
      expect(running.length).toBeGreaterThan(0);
      expect(closing).toHaveLength(1);
      expect(lines.every((l) => !/(^| {2})loss /.test(l))).toBe(true); // no bare 'loss' label
      expect(figure(running[running.length - 1]!, 'step loss')).toBe(formatValue(losses[2]!));
      expect(figure(closing[0]!, 'mean loss')).toBe(formatValue(history.epochs[0]!.loss));
      expect(history.epochs[0]!.loss).toBe((losses[0]! + losses[1]! + losses[2]!) / 3);
      expect(closing[0]).not.toContain('step loss');
    } finally {
      await trainer.close();
    }
  });
});

describe('Trainer with an abort signal', () => {
  it('stops after the step in flight and saves a checkpoint there; a resume goes on bitwise', async () => {
    const all = spirals({ perClass: 64, noise: 0.05, seed: 1 });
    const data = new Dataset(all.x, all.y);
    const graph = mlpClassifier({ features: 2, hidden: [16], classes: 2, activation: 'tanh' });
    const options = { epochs: 2, batchSize: 24, progress: false };
    const train = async (fitOptions: Partial<FitOptions>) => {
      const trainer = new Trainer(graph, {
        mode: 'in-process',
        workers: 2,
        params: initParams(graph, 3),
        optimizer: { name: 'adam', lr: 0.01 },
        seed: 5,
      });
      try {
        await trainer.fit(data, { ...options, ...fitOptions });
        return { losses: trainer.history.steps.map((s) => s.loss), params: await trainer.params() };
      } finally {
        await trainer.close();
      }
    };
    const straight = await train({});
    const dir = mkdtempSync(join(tmpdir(), 'backflow-abort-'));
    dirs.push(dir);
    // Aborted during step 3, mid-epoch, with no cadence: the checkpoint is the interruption's.
    const controller = new AbortController();
    const onStep = (s: StepRecord) => void (s.step === 3 && controller.abort());
    const stopped = await train({ checkpointDir: dir, signal: controller.signal, callbacks: { onStep } });
    expect(stopped.losses).toEqual(straight.losses.slice(0, 3));
    expect((await loadCheckpoint(dir)).step).toBe(3);
    const resumed = await train({ checkpointDir: dir, resume: true });
    expect(resumed.losses).toEqual(straight.losses);
    expectBitwiseAll(resumed.params, straight.params);
  });

  it("with dropout too: the resumed run draws the straight run's masks (steps count across the resume)", async () => {
    const all = spirals({ perClass: 32, noise: 0.05, seed: 2 });
    const data = new Dataset(all.x, all.y);
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 2]);
    const h = b.dropout(b.tanh(b.matmul(x, b.param('w1', [2, 16]))), 0.3);
    const logits = b.output('logits', b.matmul(h, b.param('w2', [16, 2])));
    b.output('loss', b.softmaxCrossEntropy(logits, b.input('y', ['B'])));
    const graph = b.build();
    const train = async (fitOptions: Partial<FitOptions>) => {
      const trainer = new Trainer(graph, {
        mode: 'in-process',
        workers: 2,
        replicas: 2,
        params: initParams(graph, 3),
        optimizer: { name: 'sgd', lr: 0.1 },
        seed: 5,
      });
      try {
        await trainer.fit(data, { epochs: 1, batchSize: 16, progress: false, ...fitOptions });
        return { losses: trainer.history.steps.map((s) => s.loss), params: await trainer.params() };
      } finally {
        await trainer.close();
      }
    };
    const straight = await train({});
    const dir = mkdtempSync(join(tmpdir(), 'backflow-dropout-'));
    dirs.push(dir);
    const controller = new AbortController();
    const onStep = (s: StepRecord) => void (s.step === 2 && controller.abort());
    await train({ checkpointDir: dir, signal: controller.signal, callbacks: { onStep } });
    const resumed = await train({ checkpointDir: dir, resume: true });
    expect(resumed.losses).toEqual(straight.losses);
    expectBitwiseAll(resumed.params, straight.params);
  });
});

describe('Trainer: where a fit stops, and what it refuses', () => {
  const all = blobs({ perClass: 24, classes: 2, spread: 0.4, seed: 5 });
  const data = new Dataset(all.x, all.y);
  const graph = mlpClassifier({ features: 2, hidden: [4], classes: 2, activation: 'tanh' });
  /** 6 steps an epoch. */
  const fitOptions = { epochs: 3, batchSize: 8, progress: false } as const;
  const trainer = (mode: 'in-process' | 'threads' = 'in-process') =>
    new Trainer(graph, {
      mode,
      workers: 1,
      params: initParams(graph, 2),
      optimizer: { name: 'sgd', lr: 0.1 },
    });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'backflow-fit-'));
    dirs.push(dir);
    return dir;
  };
  /** Fits a new trainer (resuming from `dir`), closes it, and says how many steps it has in all. */
  async function fitted(dir: string, options: Partial<FitOptions>): Promise<number> {
    const t = trainer();
    try {
      await t.fit(data, { ...fitOptions, checkpointDir: dir, resume: true, ...options });
      return t.steps;
    } finally {
      await t.close();
    }
  }

  it('a run resumed at its maxSteps runs no more steps (5, 5, 5; not 5, 6, 7); a larger maxSteps goes on', async () => {
    const dir = tempDir();
    expect(await fitted(dir, { maxSteps: 5 })).toBe(5);
    expect(await fitted(dir, { maxSteps: 5 })).toBe(5);
    expect(await fitted(dir, { maxSteps: 5 })).toBe(5);
    expect((await loadCheckpoint(dir)).step).toBe(5);
    expect(await fitted(dir, { maxSteps: 8 })).toBe(8);
  });

  it('stopping at maxSteps, by a callback or early, saves a checkpoint where it stopped', async () => {
    // maxSteps mid-epoch, without checkpointEvery: the checkpoint is that of the stop, not of an epoch's end.
    const atMax = tempDir();
    await fitted(atMax, { maxSteps: 4, resume: false });
    expect((await loadCheckpoint(atMax)).step).toBe(4);
    const byStep = tempDir();
    await fitted(byStep, {
      resume: false,
      callbacks: { onStep: (s) => (s.step === 3 ? 'stop' : undefined) },
    });
    expect((await loadCheckpoint(byStep)).step).toBe(3);
    const byEpoch = tempDir();
    await fitted(byEpoch, { resume: false, callbacks: { onEpoch: () => 'stop' } });
    expect((await loadCheckpoint(byEpoch)).step).toBe(6);
    // No improvement is ever large enough: early stopping after the second epoch.
    const early = tempDir();
    await fitted(early, { resume: false, earlyStop: { patience: 1, monitor: 'loss', minDelta: 1e9 } });
    const saved = await loadCheckpoint(early);
    expect(saved.step).toBe(12);
    expect(saved.cursor).toMatchObject({ epoch: 2, position: 0 });
  });

  it('a second fit while one runs rejects with a BusyError; the first is unharmed, and the trainer fits again after it', async () => {
    const t = trainer();
    try {
      const first = t.fit(data, { ...fitOptions, epochs: 1 });
      const err = await rejected(BusyError, t.fit(data, { ...fitOptions, epochs: 1 }));
      expect(err.message).toMatch(/^fit: this Trainer is already fitting/);
      expect((await first).steps.length).toBe(6);
      await t.fit(data, { ...fitOptions, epochs: 1 });
      expect(t.steps).toBe(12);
      expect(t.history.steps.map((s) => s.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    } finally {
      await t.close();
    }
  });

  it.each([
    [{ epochs: Number.NaN }, /^fit: epochs: expected an integer >= 1, or Infinity, found NaN$/],
    [{ epochs: undefined }, /^fit: epochs: expected an integer >= 1, or Infinity, found undefined$/],
    [{ batchSize: 0 }, /^fit: batchSize: expected an integer >= 1, found 0$/],
    [{ checkpointEvery: 0 }, /^fit: checkpointEvery: expected an integer >= 1, found 0$/],
    [{ seed: 0.5 }, /^fit: seed: expected an integer, found 0.5$/],
    [{ maxSteps: -1 }, /^fit: maxSteps: expected an integer >= 0, found -1$/],
    [{ earlyStop: { patience: 0 } }, /^fit: earlyStop: patience: expected an integer >= 1, found 0$/],
    [
      { earlyStop: { patience: 1, monitor: 'evalLoss' } },
      /^fit: earlyStop monitors evalLoss, which needs evalData$/,
    ],
  ] as const)('fit refuses %o before any worker starts', async (options, message) => {
    const live = WorkerPool.live;
    const t = trainer('threads');
    try {
      const err = await rejected(
        InputError,
        t.fit(data, { ...fitOptions, ...(options as Partial<FitOptions>) }),
      );
      expect(err.message).toMatch(message);
      expect(WorkerPool.live).toBe(live);
    } finally {
      await t.close();
    }
  });
});
