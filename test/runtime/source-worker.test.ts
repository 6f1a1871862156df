// The host worker from source (Note [source workers]): one bundle a process for threads clusters
// without op modules, the `.ts` worker with them; the bundle's stack traces name the sources.
import { readFileSync, statSync, utimesSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { FROM_SOURCE, HOST_WORKER, hostWorkerModule } from '../../src/runtime/source-worker.ts';

describe('the host worker run from source', () => {
  it('is bundled once a process into node_modules/.cache/backflow, with its source map on', async () => {
    expect(FROM_SOURCE).toBe(true);
    const first = await hostWorkerModule(false);
    const again = await hostWorkerModule(false);
    expect(again.url.href).toBe(first.url.href);
    expect(first.url.href).toMatch(/\/node_modules\/\.cache\/backflow\/host\.worker\.[0-9a-f]{16}\.mjs$/);
    expect(first.execArgv).toEqual(['--enable-source-maps']);
    const text = readFileSync(first.url, 'utf8');
    // Packages stay imports of the checkout's node_modules; no TypeScript loader is needed.
    expect(text).toMatch(/from "comlink"/);
    expect(text).not.toMatch(/tsx\/esm/);
  });

  it('is marked used each time workers start from it, so that no process prunes it meanwhile', async () => {
    const { url } = await hostWorkerModule(false);
    const hoursAgo = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(url, hoursAgo, hoursAgo);
    await hostWorkerModule(false);
    // Touched again: later than the time it was set back to (no bound on how long that took).
    expect(statSync(url).mtimeMs).toBeGreaterThan(hoursAgo.getTime());
  });

  it("is the .ts worker when op modules are given: they must share the worker's op registry", async () => {
    const module = await hostWorkerModule(true);
    expect(module.url.href).toBe(HOST_WORKER.href);
    expect(HOST_WORKER.pathname.endsWith('/workers/host.worker.ts')).toBe(true);
    expect(module.execArgv).toBeUndefined();
  });

  it("a failure inside the bundle is reported at the source's file and line", async () => {
    const { url, execArgv } = await hostWorkerModule(false);
    // Without its workerData the host worker fails on its first statement that reads it.
    const worker = new Worker(url, { execArgv: [...(execArgv ?? [])] });
    const error = await new Promise<Error>((resolve) => worker.once('error', resolve));
    await worker.terminate();
    const source = fileURLToPath(HOST_WORKER);
    const line = readFileSync(source, 'utf8')
      .split('\n')
      .findIndex((l) => l.includes('= workerData as'));
    expect(error.stack).toContain(`${source}:${line + 1}:`);
  });
});
