import { type ResourceLimits, Worker } from 'node:worker_threads';
import { type Remote, wrap } from 'comlink';
import { BackflowError, type ErrorContext, RuntimeClosedError, WorkerError } from '../errors.ts';
import {
  type BoardStatus,
  controlEndpoint,
  isTask,
  newBoard,
  readBoard,
  type WorkerData,
} from '../protocol/control.ts';

/** A control call got no answer in time (the worker is alive but busy or hung). */
export class ControlTimeoutError extends BackflowError {}

export interface PoolOptions<API> {
  /** The worker module: a `.ts` file (run from source through tsx) or a compiled `.js` file. */
  readonly url: URL;
  /** Node flags of every worker of a `.js` module (a `.ts` one gets tsx's loader only). */
  readonly execArgv?: readonly string[];
  readonly size: number;
  /**
   * The startup handshake, one guarded call per worker: the pool is up when every one resolved. Any
   * failure (bad module, a throwing init, a worker that exits) rejects `create` and stops every worker.
   */
  readonly init: (worker: number, api: Remote<API>) => Promise<unknown>;
  /** A worker died, exited (code 0 included) or crashed after startup, without being asked to. */
  readonly onFailure?: (error: WorkerError) => void;
  /** Puts a worker's status board into words for errors (Note [status board] in src/protocol/control.ts). */
  readonly describe?: (status: BoardStatus) => { text: string; context: ErrorContext };
  readonly startTimeoutMs?: number;
  /** Default timeout of a control call (default 10 s). */
  readonly callTimeoutMs?: number;
  readonly resourceLimits?: ResourceLimits;
  /** The worker id each worker is given in its `workerData` (default: its index in the pool). */
  readonly ids?: readonly number[];
  /** More fields for every worker's `workerData` (beside `worker` and `board`). */
  readonly workerData?: Record<string, unknown>;
}

interface Slot<API> {
  readonly index: number;
  readonly worker: Worker;
  /** The only proxy of this worker, kept for its whole life: see controlEndpoint. */
  readonly api: Remote<API>;
  readonly board: Int32Array;
  readonly exited: Promise<void>;
  /** Rejects the pending control calls. */
  readonly waiters: Set<(error: Error) => void>;
  death: WorkerError | null;
  /** We terminated it (close): its exit is not a failure. */
  asked: boolean;
}

// Note [idle workers]
// A runtime that is never closed must not keep its process alive, so once started a worker is
// unref'd (threads.ts unrefs the coordinator's data ports too). What waits on a worker keeps the
// process alive by its own deadline timer instead: a step, a control call, an update's
// acknowledgement (Note [deferred update]). Terminating refs a worker again, so that awaiting
// `close()` waits for its exit.

// Note [guarded calls]
// comlink never rejects a pending call when its worker dies (terminate, uncaught throw,
// process.exit), so every control call goes through `call`, which races the answer against the
// worker's death and a timeout. Every exit we did not ask for is a failure, code 0 included.

const TSX_REGISTER = new URL('../../workers/tsx-register.mjs', import.meta.url);

/** A supervised pool of worker threads with a guarded comlink control plane. */
export class WorkerPool<API> {
  /** Workers spawned and not yet exited, over all pools (for leak tests). */
  static live = 0;
  readonly size: number;
  private readonly slots: Slot<API>[] = [];
  private state: 'starting' | 'running' | 'closed' = 'starting';
  private closing: Promise<void> | null = null;

  private constructor(private readonly options: PoolOptions<API>) {
    this.size = options.size;
  }

  static async create<API>(options: PoolOptions<API>): Promise<WorkerPool<API>> {
    const pool = new WorkerPool<API>(options);
    try {
      for (let w = 0; w < options.size; w++) pool.spawn(w);
      const timeout = options.startTimeoutMs ?? 60_000;
      await Promise.all(
        pool.slots.map((s) => pool.call(s.index, 'init', (api) => options.init(s.index, api), timeout)),
      );
      // A worker that died after its own init, while others were still starting, fails the start too.
      const dead = pool.slots.find((s) => s.death !== null);
      if (dead !== undefined) throw dead.death;
    } catch (err) {
      await pool.close();
      throw err;
    }
    pool.state = 'running';
    for (const slot of pool.slots) slot.worker.unref();
    return pool;
  }

  private spawn(index: number): void {
    const board = newBoard();
    const fromSource = this.options.url.pathname.endsWith('.ts');
    const worker = new Worker(this.options.url, {
      // Explicit, so that workers never inherit the parent's loaders and flags.
      execArgv: fromSource ? ['--import', TSX_REGISTER.href] : [...(this.options.execArgv ?? [])],
      workerData: {
        ...this.options.workerData,
        worker: this.options.ids?.[index] ?? index,
        board,
      } satisfies WorkerData,
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    WorkerPool.live++;
    let exited!: () => void;
    const slot: Slot<API> = {
      index,
      worker,
      api: wrap<API>(controlEndpoint(worker)),
      board,
      exited: new Promise<void>((resolve) => (exited = resolve)),
      waiters: new Set(),
      death: null,
      asked: false,
    };
    worker.on('error', (err) => this.died(slot, err, null));
    worker.on('exit', (code) => {
      WorkerPool.live--;
      exited();
      this.died(slot, null, code);
    });
    this.slots.push(slot);
  }

  private died(slot: Slot<API>, error: unknown, code: number | null): void {
    if (slot.death !== null || slot.asked) return;
    const { text, context } = this.describe(slot);
    const thrown =
      error instanceof Error ? `${error.name}: ${error.message}` : `a non-Error: ${String(error)}`;
    const how = error !== null ? `crashed (${thrown})` : `exited unexpectedly (code ${code})`;
    slot.death = new WorkerError(
      `worker ${slot.index} ${how} ${text}`,
      { ...context, worker: slot.index, ...(code !== null ? { exitCode: code } : {}) },
      error !== null ? { cause: error } : undefined,
    );
    // Node delivers a dying worker's last messages before 'exit', but the answers they carry settle in
    // microtasks after it: a call answered before the death resolves, the others reject.
    const death = slot.death;
    const waiters = [...slot.waiters];
    setImmediate(() => {
      for (const reject of waiters) reject(death);
    });
    if (this.state === 'running') this.options.onFailure?.(slot.death);
  }

  private describe(slot: Slot<API>): { text: string; context: ErrorContext } {
    const status = readBoard(slot.board);
    if (this.options.describe) return this.options.describe(status);
    const task = isTask(status.phase);
    return {
      text: task
        ? `during the ${status.phase} of node %${status.node}, microbatch ${status.mb}`
        : `while ${status.phase}`,
      context: task
        ? {
            phase: status.phase,
            node: status.node,
            microbatch: status.mb,
            replica: status.replica,
            step: status.step,
          }
        : { phase: status.phase },
    };
  }

  /** What the worker's status board says it is doing (Note [status board]). */
  status(worker: number): BoardStatus {
    return readBoard(this.slots[worker]!.board);
  }

  /** Whether the worker is still running (not dead, not closed). */
  alive(worker: number): boolean {
    const slot = this.slots[worker];
    return slot !== undefined && slot.death === null && !slot.asked;
  }

  /**
   * A control call, guarded (Note [guarded calls]): resolves with the answer, or rejects with a
   * WorkerError when the worker dies or has died, a ControlTimeoutError after `timeoutMs`, a
   * RuntimeClosedError when the pool closes, or a WorkerError wrapping what the worker threw.
   */
  call<R>(
    worker: number,
    name: string,
    fn: (api: Remote<API>) => Promise<R>,
    timeoutMs = this.options.callTimeoutMs ?? 10_000,
  ): Promise<R> {
    const slot = this.slots[worker];
    if (slot === undefined)
      return Promise.reject(new RangeError(`${name}: no worker ${worker} in a pool of ${this.size}`));
    if (this.state === 'closed')
      return Promise.reject(
        new RuntimeClosedError(`${name} on worker ${worker}: the pool is closed`, { worker }),
      );
    if (slot.death !== null) return Promise.reject(callFailed(name, slot.death));
    return new Promise<R>((resolve, reject) => {
      let done = false;
      const settle = (finish: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        slot.waiters.delete(onDeath);
        finish();
      };
      const onDeath = (err: Error) =>
        settle(() => reject(err instanceof WorkerError ? callFailed(name, err) : err));
      const timer = setTimeout(() => {
        const { text, context } = this.describe(slot);
        settle(() =>
          reject(
            new ControlTimeoutError(
              `worker ${worker} did not answer ${name} within ${timeoutMs} ms (last seen ${text})`,
              { ...context, worker, call: name },
            ),
          ),
        );
      }, timeoutMs);
      slot.waiters.add(onDeath);
      // A synchronous throw of `fn` is a failed call too. (Not `Promise.resolve(api).then(fn)`: a
      // comlink proxy answers every property, `then` included.)
      let answer: Promise<R>;
      try {
        answer = fn(slot.api);
      } catch (err) {
        answer = Promise.reject(err);
      }
      answer.then(
        (value) => settle(() => resolve(value)),
        (err: unknown) => {
          const e = err as Error;
          settle(() =>
            reject(
              new WorkerError(
                `worker ${worker}: ${name} failed: ${e?.name}: ${e?.message}`,
                { worker, call: name },
                { cause: err },
              ),
            ),
          );
        },
      );
    });
  }

  /** The same call on every worker, in worker order. */
  all<R>(
    name: string,
    fn: (api: Remote<API>, worker: number) => Promise<R>,
    timeoutMs?: number,
  ): Promise<R[]> {
    return Promise.all(this.slots.map((s) => this.call(s.index, name, (api) => fn(api, s.index), timeoutMs)));
  }

  /** Terminates one worker as if from outside: reported like any exit we did not ask for (tests). */
  async kill(worker: number): Promise<void> {
    const slot = this.slots[worker];
    if (slot === undefined) return;
    await terminate(slot);
  }

  /**
   * Terminates a worker that no longer answers (hung, or busy past a deadline): not reported as a
   * failure, since the caller has its reason; its pending and later calls reject with `death`.
   */
  async stop(worker: number, death: WorkerError): Promise<void> {
    const slot = this.slots[worker];
    if (slot === undefined) return;
    if (slot.death === null && !slot.asked) {
      slot.death = death;
      for (const reject of [...slot.waiters]) reject(death);
    }
    await terminate(slot);
  }

  /** Terminates every worker and rejects every pending call; idempotent. */
  close(): Promise<void> {
    this.state = 'closed';
    this.closing ??= (async () => {
      for (const slot of this.slots) {
        slot.asked = true;
        const closed = new RuntimeClosedError(`worker ${slot.index}: the pool was closed during the call`, {
          worker: slot.index,
        });
        for (const reject of [...slot.waiters]) reject(closed);
      }
      await Promise.all(this.slots.map(terminate));
    })();
    return this.closing;
  }
}

/** Ends a worker and waits for its exit, which keeps the process alive meanwhile (Note [idle workers]). */
async function terminate(slot: Slot<unknown>): Promise<void> {
  slot.worker.ref();
  await slot.worker.terminate();
  await slot.exited;
}

function callFailed(name: string, death: WorkerError): WorkerError {
  return new WorkerError(`${name}: ${death.message}`, { ...death.context, call: name }, { cause: death });
}
