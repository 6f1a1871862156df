// `backflow train` in a process of its own, stopped by a signal: it finishes the step in flight,
// saves a checkpoint, and exits with 128 + the signal's number.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';
import { mlpClassifier } from '../../src/train/models.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('backflow train stopped by a signal', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s after the first progress line: the step finishes, a checkpoint is saved, exit code %i',
    async (signal, exitCode) => {
      const dir = mkdtempSync(join(tmpdir(), 'backflow-signal-'));
      dirs.push(dir);
      // Spirals (2-64-64-2) on two worker threads: 8 steps an epoch, 40 epochs, far from done when stopped.
      const args = ['train', '--data', 'spirals', '--workers', '2', '--checkpoint-dir', dir];
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', ...args, '--loss-curve', join(dir, 'loss.svg')],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const closed = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      const firstProgress = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d;
          if (/^epoch 1\/40 1\/8 /m.test(out)) resolve();
        });
        child.on('close', (c) => reject(new Error(`exited (${c}) before any progress: ${out}${err}`)));
      });
      // A process that does not stop is killed after 30 s: the test then fails on the code.
      const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        await firstProgress;
        child.kill(signal);
        const code = await closed;
        expect(code, err).toBe(exitCode);
        expect(err).toContain(
          `${signal}: stopping after the step in flight, then saving a checkpoint in ${dir}`,
        );
        const step = Number(
          /stopped by \w+ after step (\d+); --resume goes on from the checkpoint in /.exec(out)?.[1],
        );
        expect(step).toBeGreaterThanOrEqual(1);
        const graph = mlpClassifier({ features: 2, hidden: [64, 64], classes: 2 });
        const expected = Object.fromEntries(graph.params().map((n) => [n.name!, n.shape as number[]]));
        const checkpoint = await loadCheckpoint(dir, { expect: expected });
        expect(checkpoint.step).toBe(step);
        expect(checkpoint.optimizer?.step).toBe(step);
        // The data cursor stands after the batch of that step (1,024 examples an epoch).
        expect(checkpoint.cursor!.epoch * 1024 + checkpoint.cursor!.position).toBe(step * 128);
      } finally {
        clearTimeout(guard);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    },
  );
});
