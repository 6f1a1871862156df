// The `backflow` command line, called in this process: exit codes, usage errors that list the valid
// choices, and short real runs of each command.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { InputError } from '../../src/errors.ts';
import { Trainer } from '../../src/train/trainer.ts';

/** Runs the CLI and collects what it printed. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi
    .spyOn(console, 'error')
    .mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'backflow-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('backflow command line', () => {
  it('without a command prints the usage and exits 0', async () => {
    const { code, out } = await cli();
    expect(code).toBe(0);
    expect(out).toMatch(/train/);
    expect(out).toMatch(/simulate/);
    expect(out).toMatch(/inspect/);
  });

  it('an unknown command exits 2 naming the valid ones', async () => {
    const { code, err } = await cli('fly');
    expect(code).toBe(2);
    expect(err).toMatch(/unknown command 'fly' \(expected one of train, node, simulate, inspect\)/);
  });

  it.each([
    [['train', '--optimizer', 'rmsprop'], /--optimizer: expected one of sgd, adam, adamw, found 'rmsprop'/],
    [
      ['train', '--param-placement', 'everywhere'],
      /--param-placement: expected one of sharded, replicated, replica-0, found 'everywhere'/,
    ],
    [['train', '--data', 'cifar'], /--data: expected one of mnist, spirals, found 'cifar'/],
    [['train', '--warp'], /Unknown option '--warp'[\s\S]*valid options: .*--param-placement/],
    [['simulate', '--schedule', 'zigzag'], /--schedule: expected one of/],
    [['train', '--max-restarts=-1'], /--max-restarts: expected an integer >= 0, found '-1'/],
    [['train', '--restart-window', '0'], /--restart-window: expected a positive number, found '0'/],
    [
      ['train', '--ops', './a.ts,,./b.ts'],
      /--ops: expected module paths, file: URLs or package names, separated by commas, found '.\/a.ts,,.\/b.ts'/,
    ],
  ])('%j exits 2 with what was expected and found', async (argv, why) => {
    const { code, err } = await cli(...argv);
    expect(code).toBe(2);
    expect(err).toMatch(why);
  });

  it.each([
    ['--trace', () => dir, /^backflow train: --trace: expected a file to write, found the directory '.*'$/],
    [
      '--trace',
      () => join(dir, 'missing', 'trace.json'),
      /^backflow train: --trace: expected a file to write, found '.*trace\.json', whose directory does not exist$/,
    ],
    [
      '--loss-curve',
      () => dir,
      /^backflow train: --loss-curve: expected a file to write, found the directory/,
    ],
  ])('train %s that cannot be written exits 2 before training', async (flag, path, why) => {
    const { code, out, err } = await cli(
      'train',
      '--data',
      'spirals',
      '--in-process',
      '--epochs',
      '1',
      flag,
      path(),
    );
    expect(err).toMatch(why);
    expect(code).toBe(2);
    expect(out).not.toMatch(/backflow: MLP/);
  });

  it('train: a short spirals run in-process with replicated parameters reports its accuracy', async () => {
    const curve = join(dir, 'loss.svg');
    const { code, out } = await cli(
      'train',
      '--data',
      'spirals',
      '--in-process',
      '--workers',
      '2',
      '--replicas',
      '2',
      '--param-placement',
      'replicated',
      '--epochs',
      '2',
      '--lr',
      '0.01',
      '--loss-curve',
      curve,
    );
    expect(code).toBe(0);
    expect(out).toMatch(/2 worker threads, 2 replica\(s\) x 1 stage\(s\)/);
    expect(out).toMatch(/test accuracy \d+\.\d\d%/);
    // Tensor bytes per worker, reported: each replicated copy holds every parameter (2-64-64-2: 4,482 float32, 18 KiB) and its Adam state (two float64 each, 70 KiB).
    expect(out).toMatch(/worker 0: parameters 18 KiB, optimizer state 70 KiB/);
    expect(out).toMatch(/worker 1: parameters 18 KiB/);
    expect(readFileSync(curve, 'utf8')).toMatch(/^<svg/);
  });

  it('train --max-restarts and --restart-window reach the Trainer as its restarts option, with a stop signal', async () => {
    let seen: { restarts: unknown; signal: unknown } | null = null;
    const fit = vi.spyOn(Trainer.prototype, 'fit').mockImplementation(async function (this: Trainer, _, o) {
      seen = { restarts: this.options.restarts, signal: o.signal };
      throw new InputError('fit: not run in this test');
    });
    try {
      const argv = ['train', '--data', 'spirals', '--in-process', '--loss-curve', join(dir, 'r.svg')];
      expect((await cli(...argv, '--max-restarts', '3', '--restart-window', '90')).code).toBe(1);
      expect(seen).toEqual({ restarts: { max: 3, withinMs: 90_000 }, signal: expect.any(AbortSignal) });
      // 0 (the default): no restarts, a dead worker fails the run as before.
      expect((await cli(...argv)).code).toBe(1);
      expect(seen!.restarts).toBeUndefined();
    } finally {
      fit.mockRestore();
    }
  });

  it('train --ops: the modules reach the runtime, repeated or comma-separated; --help names the flag', async () => {
    const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/ops/${name}`, import.meta.url));
    const spirals = ['train', '--data', 'spirals', '--epochs', '1', '--loss-curve', join(dir, 'ops.svg')];
    // Refused in this thread, before any worker starts.
    const missing = await cli(...spirals, '--ops', fixture('cube.ts'), '--ops', fixture('missing.ts'));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/OpModuleError: cannot import op module 'file:\/\/.*\/missing\.ts'/);
    // Imported by the workers too: this one refuses to load there.
    const inWorkers = await cli(
      ...spirals,
      '--ops',
      `${fixture('cube.ts')},${fixture('throws-in-worker.ts')}`,
    );
    expect(inWorkers.code).toBe(1);
    expect(inWorkers.err).toMatch(
      /WorkerError: .*cannot import op module 'file:\/\/.*\/throws-in-worker\.ts': Error: this op module refuses to load in a worker/,
    );
    expect((await cli('train', '--help')).out).toMatch(
      /--ops <module> +a module that defines ops .*repeatable/,
    );
  });

  it("train: the README's spirals pipeline (4 stages, 1F1B, 8 microbatches) trains to >= 95% test accuracy", async () => {
    // The command as the README shows it; seeded, so the accuracy is the same at every run.
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const command = /^npm run backflow -- (train --data spirals .*--schedule 1f1b.*)$/m.exec(readme)?.[1];
    expect(command, 'a spirals pipeline command in the README').toBeDefined();
    const { code, out } = await cli(...command!.split(/\s+/), '--loss-curve', join(dir, 'spirals.svg'));
    expect(code).toBe(0);
    expect(out).toMatch(/4 worker threads, 1 replica\(s\) x 4 stage\(s\), 8 microbatch\(es\)/);
    const accuracy = Number(/test accuracy (\d+\.\d\d)%/.exec(out)?.[1]);
    expect(accuracy).toBeGreaterThanOrEqual(95);
  });

  it('simulate prints the bubble of a schedule; inspect prints a plan', async () => {
    const sim = await cli('simulate', '--schedule', 'gpipe', '--stages', '4', '--microbatches', '8');
    expect(sim.code).toBe(0);
    expect(sim.out).toMatch(/bubble/i);
    const plan = await cli('inspect', '--what', 'plan', '--workers', '2');
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(/^plan: 2 workers/m);
  });
});
