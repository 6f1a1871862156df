// Node processes (test/fixtures/node-process.ts, or the `backflow node` command) spawned by a test,
// each with its output kept and its exit awaited; `stopAll` ends those still running.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../fixtures/node-process.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/bin.mjs', import.meta.url));

export interface SpawnedNode {
  readonly child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves once a line containing `text` has been printed; rejects if the process exits first. */
  printed(text: string): Promise<void>;
  /** The exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
}

const running = new Set<SpawnedNode>();

function watch(child: ChildProcess): SpawnedNode {
  let out = '';
  const waiters: { text: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const take = (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters])
      if (out.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const node: SpawnedNode = {
    child,
    output: () => out,
    printed: (text) =>
      out.includes(text)
        ? Promise.resolve()
        : new Promise((resolve, reject) => {
            waiters.push({ text, resolve, reject });
            void exited.then((code) =>
              reject(new Error(`the node exited (${code}) before printing ${JSON.stringify(text)}:\n${out}`)),
            );
          }),
    exited,
  };
  running.add(node);
  void exited.then(() => running.delete(node));
  return node;
}

export interface FixtureNode {
  readonly nats: { readonly servers: string; readonly token?: string };
  readonly cluster: string;
  readonly hosts?: number;
  readonly name?: string;
  readonly listen?: string;
  readonly reconnectForMs?: number;
  readonly dataTls?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** Environment variables set for the process (BACKFLOW_WASM_RELAXED ...), over this one's. */
  readonly env?: Record<string, string>;
}

/** A node process running startNode in-process; resolves once it has joined (printed 'ready'). */
export async function spawnNode({ env, ...o }: FixtureNode): Promise<SpawnedNode> {
  const options = { hosts: 1, listen: '127.0.0.1', ...o };
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(env !== undefined ? { env: { ...process.env, ...env } } : {}),
  });
  const node = watch(child);
  await node.printed('ready ');
  return node;
}

/** `backflow node` with these arguments (it is not tied to this process: stopAll ends it). */
export function spawnCli(args: readonly string[]): SpawnedNode {
  return watch(spawn(process.execPath, [CLI, 'node', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Ends every node still running (SIGKILL) and waits for their exits. */
export async function stopAll(): Promise<void> {
  const nodes = [...running];
  for (const n of nodes) n.child.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
}
