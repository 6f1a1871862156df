/**
 * PyTorch as a peer of the `train` suite: test/bench/peers/torch_train.py in a child process, which
 * trains the same MLP with a fixed number of threads and times its steps itself, a round of steps
 * per request (so its rounds alternate with the other engines' and share the machine's noise).
 * The interpreter is BACKFLOW_BENCH_PYTHON, default `python3`; without torch there the peer is
 * skipped with the reason.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./torch_train.py', import.meta.url));

/** A running torch trainer. */
export interface TorchPeer {
  readonly name: string;
  readonly threads: number;
  readonly version: string;
  /** Runs `steps` steps; each one's wall time in ms, timed in Python. */
  round(steps: number): Promise<number[]>;
  close(): Promise<void>;
}

/** The interpreter the peer runs on. */
export function torchPython(): string {
  return process.env['BACKFLOW_BENCH_PYTHON'] || 'python3';
}

/**
 * Starts the peer with `threads` intra-op threads; rejects, saying why, when the interpreter or torch
 * is missing (the line torch's import error printed last).
 */
export function startTorch(threads: number, options: { batch: number; lr: number }): Promise<TorchPeer> {
  const python = torchPython();
  const args = [SCRIPT, '--threads', `${threads}`, '--batch', `${options.batch}`, '--lr', `${options.lr}`];
  const child: ChildProcess = spawn(python, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  const failed: ((e: Error) => void)[] = [];
  let ended: Error | null = null;
  const fail = (e: Error) => {
    ended ??= e;
    for (const f of failed.splice(0)) f(ended);
    waiting.length = 0;
  };
  lines.on('line', (line) => {
    waiting.shift()?.(line);
    failed.shift();
  });
  child.once('error', (e) => fail(new Error(`${python}: ${e.message}`)));
  child.once('exit', (code, signal) => {
    const last = stderr.trim().split('\n').at(-1) ?? '';
    fail(new Error(`${python} ${SCRIPT} exited (${code ?? signal})${last !== '' ? `: ${last}` : ''}`));
  });
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      if (ended !== null) return reject(ended);
      waiting.push((line) => resolve(JSON.parse(line) as Record<string, unknown>));
      failed.push(reject);
    });
  const close = async () => {
    if (ended !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.stdin!.end();
    await exited;
  };
  return next().then((ready) => ({
    name: `torch-${threads}-thread${threads === 1 ? '' : 's'}`,
    threads: ready['threads'] as number,
    version: String(ready['torch']),
    round: async (steps) => {
      const reply = next();
      child.stdin!.write(`${JSON.stringify({ steps })}\n`);
      return (await reply)['ms'] as number[];
    },
    close,
  }));
}
