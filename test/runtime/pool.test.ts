import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuntimeClosedError, WorkerError } from '../../src/errors.ts';
import { ControlTimeoutError, type PoolOptions, WorkerPool } from '../../src/runtime/pool.ts';
import type { PoolFixture } from '../fixtures/pool.worker.ts';

const FIXTURE = new URL('../fixtures/pool.worker.ts', import.meta.url);

/** Failure events, awaitable one by one (no sleeps: tests wait for the event itself). */
class Failures {
  readonly seen: WorkerError[] = [];
  private waiting: ((e: WorkerError) => void)[] = [];
  readonly push = (e: WorkerError) => {
    this.seen.push(e);
    for (const w of this.waiting.splice(0)) w(e);
  };
  next(): Promise<WorkerError> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

function create(size: number, more: Partial<PoolOptions<PoolFixture>> = {}, failures = new Failures()) {
  return WorkerPool.create<PoolFixture>({
    url: FIXTURE,
    size,
    init: (_, api) => api.init(),
    onFailure: failures.push,
    ...more,
  });
}

/** A deadline against hangs, generous so that a loaded machine does not break it. */
const FAILURE_DEADLINE_MS = 10_000;

async function rejectsWithin<E extends Error>(p: Promise<unknown>, ms: number): Promise<E> {
  const t0 = performance.now();
  const err = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: E) => e,
  );
  expect(performance.now() - t0).toBeLessThan(ms);
  return err;
}

describe('WorkerPool: guarded control calls', () => {
  const failures = new Failures();
  let pool: WorkerPool<PoolFixture>;
  const live = WorkerPool.live;

  beforeAll(async () => {
    pool = await create(6, {}, failures);
  });
  afterAll(() => pool.close());

  it('answers calls; a call that throws rejects with a WorkerError and the worker lives on', async () => {
    expect(await pool.all('init', (api) => api.init())).toEqual([0, 1, 2, 3, 4, 5]);
    const err = await rejectsWithin<WorkerError>(
      pool.call(5, 'reject', (api) => api.reject()),
      FAILURE_DEADLINE_MS,
    );
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toContain('TypeError: fixture: bad argument');
    expect(err.context).toMatchObject({ worker: 5, call: 'reject' });
    expect(await pool.call(5, 'echo', (api) => api.echo('alive'))).toBe('alive');
  });

  it('a call without an answer rejects with ControlTimeoutError; the worker lives on', async () => {
    const err = await rejectsWithin(
      pool.call(5, 'forever', (api) => api.forever(), 100),
      FAILURE_DEADLINE_MS,
    );
    expect(err).toBeInstanceOf(ControlTimeoutError);
    expect(err.message).toMatch(/worker 5 did not answer forever within 100 ms/);
    expect(pool.alive(5)).toBe(true);
  });

  it.each([
    [
      'is terminated from outside',
      0,
      (p: WorkerPool<PoolFixture>) => void p.kill(0),
      /exited unexpectedly \(code 1\)/,
    ],
    [
      'throws an uncaught error',
      1,
      (p: WorkerPool<PoolFixture>) => void p.call(1, 'crash', (api) => api.crash()).catch(() => {}),
      /crashed \(Error: fixture: boom\)/,
    ],
    [
      'calls process.exit(0)',
      2,
      (p: WorkerPool<PoolFixture>) => void p.call(2, 'exit', (api) => api.exit()).catch(() => {}),
      /exited unexpectedly \(code 0\)/,
    ],
  ])(
    'a pending call rejects within the deadline when its worker %s, and the death is a failure',
    async (_, w, kill, why) => {
      const failure = failures.next();
      const pending = pool.call(w, 'forever', (api) => api.forever());
      kill(pool);
      const err = await rejectsWithin<WorkerError>(pending, FAILURE_DEADLINE_MS);
      expect(err).toBeInstanceOf(WorkerError);
      expect(err.message).toMatch(why);
      expect(err.context).toMatchObject({ worker: w, call: 'forever' });
      const reported = await failure;
      expect(reported).toBeInstanceOf(WorkerError);
      expect(reported.context.worker).toBe(w);
      expect(pool.alive(w)).toBe(false);
      // Later calls reject at once.
      await expect(pool.call(w, 'echo', (api) => api.echo(1))).rejects.toBeInstanceOf(WorkerError);
    },
  );

  it('keeps the cause of a crash: name, message, stack and code', async () => {
    const crash = failures.seen.find((e) => e.context.worker === 1)!;
    const cause = crash.cause as Error & { code?: string };
    expect(cause.message).toBe('fixture: boom');
    expect(cause.stack).toContain('pool.worker.ts');
    expect(cause.code).toBe('EBOOM');
  });

  it('an exit with code 0 that nobody asked for, with no call pending, is a failure', async () => {
    const failure = failures.next();
    await pool.call(3, 'exitLater', (api) => api.exitLater());
    const err = await failure;
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.context).toMatchObject({ worker: 3, exitCode: 0 });
  });

  it('1,000 control calls with forced garbage collection on both sides do not kill the worker', async () => {
    // --expose-gc for this process, without a command-line flag: gc() taken from a fresh context.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = failures.seen.length;
    for (let i = 0; i < 1000; i++) {
      expect(await pool.call(4, 'echo', (api) => api.echo(i))).toBe(i);
      if (i % 10 === 0) {
        gc();
        await pool.call(4, 'gc', (api) => api.gc());
      }
    }
    // Finalizers (comlink's proxy release) run in later tasks: give them a turn, then check.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await pool.call(4, 'echo', (api) => api.echo('still here'))).toBe('still here');
    expect(pool.alive(4)).toBe(true);
    expect(failures.seen.length).toBe(before);
  });

  it('close() rejects pending calls with RuntimeClosedError, is idempotent, and stops every worker', async () => {
    const pending = pool.call(5, 'forever', (api) => api.forever());
    const err = await rejectsWithin(Promise.all([pool.close(), pending]), FAILURE_DEADLINE_MS);
    expect(err).toBeInstanceOf(RuntimeClosedError);
    await pool.close();
    expect(WorkerPool.live).toBe(live);
    await expect(pool.call(4, 'echo', (api) => api.echo(1))).rejects.toBeInstanceOf(RuntimeClosedError);
    // Exits we asked for are not failures.
    expect(failures.seen.map((e) => e.context.worker).sort()).toEqual([0, 1, 2, 3]);
  });
});

describe('WorkerPool: a failure while starting rejects create and leaves no worker', () => {
  it.each([
    [
      'a bad module path',
      { url: new URL('../fixtures/no-such.worker.ts', import.meta.url) },
      /Cannot find module|no-such\.worker/,
    ],
    [
      'a module that throws while loading',
      { workerData: { mode: 'throw-at-load' } },
      /the module failed to load/,
    ],
    ['an init that throws', { workerData: { mode: 'init-throws' } }, /init failed/],
  ])('%s', async (_, more, why) => {
    const live = WorkerPool.live;
    const failures = new Failures();
    const err = await rejectsWithin<WorkerError>(create(2, more, failures), 30_000);
    expect(err).toBeInstanceOf(WorkerError);
    expect(`${err.message} ${(err.cause as Error)?.message}`).toMatch(why);
    expect(WorkerPool.live).toBe(live);
    expect(failures.seen).toEqual([]);
  });
});
