import type { Host, HostEffect, Message, TaskInfo } from '../actor/host.ts';
import type { Credit, LossReport } from '../actor/messages.ts';
import { toWireError } from '../actor/wire-error.ts';
import { BackflowError } from '../errors.ts';
import { SMALL_TENSOR_BYTES } from '../protocol/batch.ts';
import { decodeHostInputs } from '../protocol/batch-reader.ts';
import { describe, edgeName, refused } from '../protocol/codec.ts';
import { type BoardPhase, writeBoard } from '../protocol/control.ts';
import {
  COORDINATOR,
  type HostInput,
  type HostOutput,
  type Limits,
  type UpdateMessage,
} from '../protocol/envelope.ts';
import type { Link } from '../protocol/link.ts';
import { installedPool, installPool, type StoragePool } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { TraceRecorder } from '../trace/recorder.ts';

/**
 * Milliseconds of tasks a shell runs before it yields to the event loop, so that messages and
 * control calls get in between: long enough that a yield (a few microseconds) is noise, short enough
 * that a control call or a step's start waits little.
 */
export const SLICE_MS = 3;

// Note [long tasks]
// A link sends what a turn queued at the end of the turn (Note [flush cadence]), and a turn runs
// tasks for SLICE_MS or more: one task can take milliseconds (a 512x512 matmul takes about 6). A
// message queued for another host before such a task waited for it, and so did the host, when the
// message was what it needed next: with four chains of 512x512 matmuls on two workers (the actors
// suite's scaling case), the loss's cotangent sat behind the other worker's own matmuls, and that
// worker idled 13-14 ms of a 168 ms step. So before a task that makes at least LONG_TASK_BYTES (an
// output, or its part of the VJP's contributions) the shell sends what is queued for other hosts:
// that step took 150-154 ms against 167-170. Tasks on tensors of a few elements (a graph placed per
// node) never reach it, and their envelopes keep their size. Reports for the coordinator still
// leave at the end of the turn: it takes nothing from them before the step is complete.

// Note [report cadence]
// A host's sums of squares and losses are scalars the coordinator only records until the step's
// last report is in. Sent at the end of each turn, they left one envelope per gradient closed: on
// the MNIST MLP, data-parallel over two workers with parameters sharded, the coordinator took about
// ten envelopes a step, each waking its thread. On the 2-vCPU machine measured, a post to a
// sleeping thread costs its sender about 20 us and the receiver wakes some 35 us later, and that
// step kept both cores busy (docs/measurements.md). So while a gradient this host reports is still
// open in the step, a scalar report waits in the link's envelope (`hold`): it leaves with the next
// message that does not wait (the report of the last gradient to close, a gradient's tensor, a
// failure) or with any flush (before an update, a recycle or a step's start). Nothing the
// coordinator waits for comes later: the last report of a host's step is never held.

/** Bytes a task makes from which it counts as long (Note [long tasks]): the envelope's size for a transferred tensor. */
export const LONG_TASK_BYTES = SMALL_TENSOR_BYTES;

/** Where a shell's messages go: links to the coordinator and to peers, or the in-process cluster's queue. */
export interface Outbox {
  /**
   * A data message, a credit or a shard's loss (Note [local update]) for another host's worker; a
   * ProtocolError if it cannot go (no wire, a detached tensor).
   */
  send(worker: number, message: Message | Credit | LossReport): void;
  /**
   * A report, or a failpoint notice, for the coordinator; `hold`: it waits for the next message
   * that does not, or a flush (Note [report cadence]).
   */
  report(message: HostOutput<Tensor>, hold?: boolean): void;
  /** Sends what is queued now (before a recycle, Note [step arena]; before blocking). */
  flush(): void;
  /** Sends what is queued for other hosts now (before a long task: Note [long tasks]). */
  flushPeers(): void;
  close(): void;
}

// Note [refused envelopes]
// An envelope a host refuses (malformed, or with a message the host cannot take) may have carried
// messages of any step, and the host cannot tell which: it knows only the last start it took, or
// none. So its failure report says phase 'receive', and the coordinator fails the step in flight
// whatever step the report names, or, when none is, the next step at its start; the error is the
// refusal, naming the edge and what was wrong with the envelope. An envelope the coordinator
// refuses (LinkedCluster) is reported the same way.

/** What stops a host at failpoints 'exit', 'hang' and 'pause': its thread or process, or (sharing a thread) its shell. */
export interface Halt {
  /** The host's process or thread ends (a worker thread exits with code 0). */
  exit(task: TaskInfo, step: number): void;
  /** The host blocks for good. */
  block(task: TaskInfo, step: number): void;
}

export interface ShellOptions {
  readonly halt: Halt;
  /** The host's storage pool (Note [storage pool]), installed while the shell runs its host. */
  readonly pool?: StoragePool | null;
  /** The worker thread's status board (Note [status board]), written before every task. */
  readonly board?: Int32Array;
  /** Schedules the next time slice (default setImmediate). */
  readonly defer?: (run: () => void) => void;
  /** The slice's clock in milliseconds (default performance.now). */
  readonly now?: () => number;
}

/**
 * What runs one pure Host (src/actor) wherever it lives, a worker thread, the coordinator's thread, or
 * a node process: takes messages in and hands them to the host, runs ready tasks for a time slice at
 * a time, performs the effects (sends, reports, failpoints), records the trace, and writes the status
 * board. The same code for every transport; only the outbox (links, or a queue) and the halt differ.
 */
export class HostShell {
  readonly worker: number;
  readonly recorder: TraceRecorder;
  /** The cluster generation: envelopes of an older one are dropped and counted in `dropped`. */
  gen = 0;
  dropped = 0;
  /** The step of the last start taken (for failures outside a task). */
  private step = -1;
  private scheduled = false;
  /** Stopped at a failpoint, or closed: takes nothing, runs nothing. */
  private halted = false;
  /** Tests: takes messages, runs no task (a consumer at its slowest). */
  private holding = false;
  /** The pool's retained bytes past which the shell relieves it before the next task (Note [step arena]). */
  private pressureAt: number;
  /** A replenish is deferred (Note [replenishing]). */
  private replenishing = false;
  private readonly limits: Limits;
  private readonly halt: Halt;
  private readonly pool: StoragePool | null;
  private readonly board: Int32Array | null;
  private readonly defer: (run: () => void) => void;
  private readonly now: () => number;

  constructor(
    readonly host: Host,
    private readonly out: Outbox,
    options: ShellOptions,
  ) {
    this.worker = host.worker;
    this.recorder = new TraceRecorder(host.worker);
    const { plan } = host;
    this.limits = { nodes: plan.graph.size, replicas: plan.replicas, workers: plan.workers };
    this.halt = options.halt;
    this.pool = options.pool ?? null;
    this.board = options.board ?? null;
    this.defer = options.defer ?? setImmediate;
    this.now = options.now ?? (() => performance.now());
    this.pressureAt = host.memoryLimit;
  }

  /** An envelope from a link: checked, dropped if of an older generation, each message taken in order. */
  receive(link: Link, raw: unknown): void {
    let m: HostInput<Tensor> | undefined;
    const time = this.recorder.enabled ? this.recorder.now() : 0;
    this.inside('receive', () => {
      try {
        const envelope = decodeHostInputs(raw, link.edgeIn, link.peer, this.limits, link.ringIn);
        if (envelope.gen < this.gen) {
          this.dropped += envelope.messages.length;
          return;
        }
        this.gen = envelope.gen;
        for (m of envelope.messages) this.deliver(m, link.peer);
      } catch (err) {
        this.fail(refused(link.edgeIn, m === undefined ? 'an envelope' : describe(m), err, this.step));
      }
    });
    this.recorder.mark({ what: 'receive', step: this.step, peer: link.peer }, time);
  }

  /** Runs a link's post, marked in the trace when it records (Note [step marks]). */
  post(peer: number, post: () => void): void {
    if (!this.recorder.enabled) {
      post();
      return;
    }
    const time = this.recorder.now();
    post();
    this.recorder.mark({ what: 'post', step: this.step, peer }, time);
  }

  /** One message, without an envelope (the in-process cluster), from another host or the COORDINATOR. */
  take(m: HostInput<Tensor>, from: number): void {
    this.inside('receive', () => {
      try {
        this.deliver(m, from);
      } catch (err) {
        this.fail(refused(edgeName(from, this.worker), describe(m), err, this.step));
      }
    });
  }

  /** For tests: while `on`, the shell takes messages but runs no task (a deliberately slow consumer). */
  hold(on: boolean): void {
    this.holding = on;
    this.schedule();
  }

  /** Stops for good: nothing is taken or run from now on, and the outbox is closed. */
  close(): void {
    this.halted = true;
    this.out.close();
  }

  /** Runs `f` with the host's pool installed and the board showing `phase`, then schedules what is ready. */
  private inside(phase: BoardPhase, f: () => void): void {
    if (this.halted) return;
    const outer = installedPool();
    installPool(this.pool);
    this.status(phase);
    try {
      f();
      this.decide();
    } finally {
      this.status('idle');
      installPool(outer);
    }
    this.schedule();
    if (!this.scheduled && this.pool !== null && this.pool.owed > 0 && !this.replenishing) {
      this.replenishing = true;
      // After this turn and its flush (Note [flush cadence]).
      this.defer(() => this.replenish());
    }
  }

  /** Note [replenishing]: while no task is ready, the storages the last step sent away are made again. */
  private replenish(): void {
    this.replenishing = false;
    // Work that came in first goes first: the next idle turn.
    if (!this.halted && !this.scheduled) this.pool?.replenish(this.host.memoryLimit);
  }

  /**
   * Note [local update]: once the host has every gradient and loss of a step whose update it decides,
   * what is queued (the reports the coordinator waits for) leaves first, then the update runs here.
   */
  private decide(): void {
    if (this.halted || !this.host.decisionReady()) return;
    const time = this.recorder.enabled ? this.recorder.now() : 0;
    this.out.flush();
    this.perform(this.host.decide());
    this.recorder.mark({ what: 'update', step: this.step }, time);
  }

  private deliver(m: HostInput<Tensor>, from: number): void {
    if (this.halted) return;
    if (m.kind === 'start') {
      const time = this.recorder.enabled ? this.recorder.now() : 0;
      this.step = m.step;
      // Queued tensors leave before the last step's storages are recycled (Note [step arena]).
      this.out.flush();
      this.perform(this.host.startStep(m));
      this.pressureAt = this.host.memoryLimit;
      this.recorder.mark({ what: 'start', step: m.step }, time);
    } else if (m.kind === 'update') {
      const time = this.recorder.enabled ? this.recorder.now() : 0;
      this.update(m);
      this.recorder.mark({ what: 'update', step: m.step }, time);
    } else if (m.kind === 'credit') this.host.credit(from, m);
    else if (m.kind === 'loss') this.perform(this.host.deliver(m));
    else {
      if (from !== COORDINATOR && m.kind !== 'feed')
        this.recorder.received(from, m.kind, 'mb' in m ? m.mb : -1, m.tensor.bytes);
      this.perform(this.host.deliver(m));
    }
  }

  /** A step's update; a failure is reported as the update's, so the coordinator tells it from the step's. */
  private update(u: UpdateMessage): void {
    // The update recycles the step's storages: what is queued leaves first (Note [step arena]).
    this.out.flush();
    try {
      this.perform(this.host.applyUpdate(u));
    } catch (err) {
      const error = toWireError(err, { worker: this.worker, step: u.step, phase: 'update' });
      this.out.report({ kind: 'failed', step: u.step, error });
    }
  }

  /**
   * A failure outside a task fails a step, never the host: an unsendable tensor this host's step; a
   * refused envelope or message (its error says phase 'receive') the coordinator's step in flight
   * (Note [refused envelopes]); a refused update (phase 'update') that update, as `update` does.
   */
  fail(err: unknown): void {
    const context = err instanceof BackflowError ? err.context : {};
    const phase = context.phase === 'update' || context.phase === 'receive' ? context.phase : undefined;
    // Before its first start a host has no step: 0 (steps count from 1).
    const step =
      phase === 'update' && typeof context.step === 'number' ? context.step : Math.max(this.step, 0);
    const error = toWireError(err, { worker: this.worker, step, ...(phase ? { phase } : {}) });
    this.out.report({ kind: 'failed', step, error });
  }

  private perform(effects: HostEffect[]): void {
    for (const e of effects) {
      if (this.halted) return;
      if (e.kind === 'send') {
        const m = e.message;
        try {
          if (m.kind !== 'feed') this.recorder.sent(e.worker, m.kind, 'mb' in m ? m.mb : -1, m.tensor.bytes);
          this.out.send(e.worker, m);
        } catch (err) {
          this.fail(err);
        }
      } else if (e.kind === 'report') {
        const r = e.report;
        if (this.recorder.enabled) {
          const node = 'node' in r ? { node: r.node } : {};
          this.recorder.mark({ what: 'report', step: r.step, report: r.kind, ...node }, this.recorder.now());
        }
        this.out.report(r, (r.kind === 'gradNorm' || r.kind === 'loss') && this.host.reportsOpen());
      } else if (e.kind === 'credit' || e.kind === 'loss') {
        try {
          this.out.send(e.worker, e.kind === 'credit' ? e.credit : e.loss);
        } catch (err) {
          this.fail(err);
        }
      } else if (e.action === 'exit') {
        this.halted = true;
        this.halt.exit(e.task, this.step);
      } else if (e.action === 'hang' || e.action === 'pause') {
        if (e.action === 'pause') {
          this.out.report({ kind: 'failpoint', action: e.action, task: e.task });
          this.out.flush();
        }
        this.halted = true;
        this.halt.block(e.task, this.step);
      }
    }
  }

  private schedule(): void {
    if (this.scheduled || this.halted || this.holding || this.host.next() === null) return;
    this.scheduled = true;
    this.defer(() => this.pump());
  }

  /** Runs ready tasks for one time slice, the board showing each, then yields. */
  private pump(): void {
    this.scheduled = false;
    this.inside('idle', () => {
      const until = this.now() + SLICE_MS;
      const { host, recorder } = this;
      for (let task = host.next(); task !== null && !this.halted && !this.holding; task = host.next()) {
        this.relieve();
        this.status(task.phase, task);
        if (host.nextBytes() >= LONG_TASK_BYTES) this.out.flushPeers();
        const start = recorder.enabled ? recorder.now() : 0;
        const effects = host.run();
        if (recorder.enabled) recorder.task(task, start, recorder.now(), host.stats.keptBytes);
        this.perform(effects);
        // The links flush their envelopes in a microtask, once for this turn (Note [flush cadence]).
        if (this.now() >= until) break;
      }
    });
  }

  /**
   * Memory pressure (Note [step arena]): when the pool keeps more than the host's budget alive, what
   * is queued leaves and the host gives back its dead storages and lets go of free ones. The next
   * time is an eighth of the budget further on, so that a host near its budget does not look for
   * its live values before every task.
   */
  private relieve(): void {
    const pool = this.pool;
    if (pool === null || pool.retainedBytes <= this.pressureAt) return;
    this.out.flush();
    this.host.relieve();
    const limit = this.host.memoryLimit;
    this.pressureAt = Math.max(limit, pool.retainedBytes + limit / 8);
  }

  private status(phase: BoardPhase, task?: TaskInfo): void {
    if (this.board !== null) writeBoard(this.board, phase, this.step, task);
  }
}
