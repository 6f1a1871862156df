import type { NodeActor } from './node-actor.ts';

/**
 * 'forward'; 'backward' (the whole VJP); 'input' and 'weight' (the two parts of a split VJP: the
 * gradients of activations first, the gradients of parameters later).
 */
export type TaskPhase = 'forward' | 'backward' | 'input' | 'weight';

/** One action of a pipeline schedule for this worker: run every task of `stage` for microbatch `mb`. */
export interface HostAction {
  readonly kind: 'F' | 'B' | 'I' | 'W';
  readonly stage: number;
  readonly mb: number;
}

interface QueuedTask<T> {
  readonly phase: TaskPhase;
  readonly node: number;
  readonly stage: number;
  readonly replica: number;
  readonly mb: number;
  readonly actor: NodeActor<T>;
  readonly value?: T;
}

/** A FIFO with O(1) shift. */
class Fifo<X> {
  private items: X[] = [];
  private head = 0;
  push(x: X): void {
    this.items.push(x);
  }
  shift(): X | undefined {
    if (this.head === this.items.length) return undefined;
    const x = this.items[this.head++];
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return x;
  }
  get size(): number {
    return this.items.length - this.head;
  }
}

const F = 0;
const G = 1; // gradients complete: ready for a B or an I action
const W = 2;

/**
 * The ready tasks of a host, and which one runs next. Without a schedule: dataflow order, backward
 * tasks first. With a schedule: the worker's actions in order; an action takes the ready tasks of its
 * (stage, microbatch) until every task it covers has run, and nothing else runs meanwhile. This is the
 * only place a schedule is read, and it reads it as data: no schedule has code of its own.
 */
export class TaskQueue<T> {
  private readonly forwards: number[] = [];
  private readonly backwards: number[] = [];
  private readonly weights: number[] = [];
  private readonly stages: number;
  private microbatches = 1;
  private readonly fifo = [new Fifo<QueuedTask<T>>(), new Fifo<QueuedTask<T>>()];
  private buckets = new Map<number, QueuedTask<T>[]>();
  private doneCounts = new Map<number, number>();
  private finished = new Map<number, number>();
  private schedule: readonly HostAction[] | null = null;
  private cursor = 0;
  /** Microbatches in flight per stage (forward done, backward not yet), and the peak of each. */
  readonly inFlight: number[] = [];
  readonly peakInFlight: number[] = [];

  constructor(actors: readonly NodeActor<T>[]) {
    let stages = 0;
    for (const a of actors) stages = Math.max(stages, a.stage + 1);
    this.stages = stages;
    for (let s = 0; s < stages; s++) {
      this.forwards.push(0);
      this.backwards.push(0);
      this.weights.push(0);
      this.inFlight.push(0);
      this.peakInFlight.push(0);
    }
    for (const a of actors) {
      this.forwards[a.stage]!++;
      if (a.runsVjp) this.backwards[a.stage]!++;
      if (a.hasWeightPart) this.weights[a.stage]!++;
    }
  }

  setSchedule(actions: readonly HostAction[] | null): void {
    this.schedule = actions;
  }

  start(microbatches: number): void {
    this.clear();
    this.microbatches = microbatches;
  }

  clear(): void {
    this.fifo[0] = new Fifo();
    this.fifo[1] = new Fifo();
    this.buckets.clear();
    this.doneCounts.clear();
    this.finished.clear();
    this.cursor = 0;
    this.inFlight.fill(0);
    this.peakInFlight.fill(0);
  }

  private key(kind: number, stage: number, mb: number): number {
    return (kind * this.stages + stage) * this.microbatches + mb;
  }

  /** A task whose inputs (forward) or gradient contributions (backward) are all there. */
  ready(task: QueuedTask<T>): void {
    if (this.schedule === null) {
      this.fifo[task.phase === 'forward' ? 0 : 1]!.push(task);
      return;
    }
    const k = this.key(task.phase === 'forward' ? F : task.phase === 'weight' ? W : G, task.stage, task.mb);
    const list = this.buckets.get(k);
    if (list === undefined) this.buckets.set(k, [task]);
    else list.push(task);
  }

  /** The next task to run, or null when none may run now. */
  take(): QueuedTask<T> | null {
    if (this.schedule === null) return this.fifo[1]!.shift() ?? this.fifo[0]!.shift() ?? null;
    while (this.cursor < this.schedule.length) {
      const a = this.schedule[this.cursor]!;
      if (this.complete(a)) {
        this.cursor++;
        continue;
      }
      const kind = a.kind === 'F' ? F : a.kind === 'W' ? W : G;
      const list = this.buckets.get(this.key(kind, a.stage, a.mb));
      const task = list?.pop();
      if (task === undefined) return null;
      if (a.kind === 'F' || a.kind === 'W') return task;
      return { ...task, phase: a.kind === 'B' ? 'backward' : 'input' };
    }
    return null;
  }

  private complete(a: HostAction): boolean {
    const kind = a.kind === 'F' ? 0 : a.kind === 'W' ? 2 : 1;
    const need = (kind === 0 ? this.forwards : kind === 2 ? this.weights : this.backwards)[a.stage] ?? 0;
    return (this.doneCounts.get(this.key(kind, a.stage, a.mb)) ?? 0) >= need;
  }

  /** Bookkeeping after a task ran: what the schedule's actions and the in-flight counts see. */
  done(task: QueuedTask<T>): void {
    const { stage, mb, phase, actor } = task;
    const kind = phase === 'forward' ? 0 : phase === 'weight' ? 2 : 1;
    const k = this.key(kind, stage, mb);
    const n = (this.doneCounts.get(k) ?? 0) + 1;
    this.doneCounts.set(k, n);
    if (phase === 'forward') {
      if (n === this.forwards[stage] && this.backwards[stage]! > 0) {
        this.inFlight[stage]!++;
        if (this.inFlight[stage]! > this.peakInFlight[stage]!) this.peakInFlight[stage] = this.inFlight[stage]!;
      }
      return;
    }
    if (phase === 'input' && actor.hasWeightPart) {
      this.ready({ ...task, phase: 'weight' });
      return;
    }
    const f = (this.finished.get(stage * this.microbatches + mb) ?? 0) + 1;
    this.finished.set(stage * this.microbatches + mb, f);
    if (f === this.backwards[stage]) this.inFlight[stage]!--;
  }

  /** Where the schedule stands, for error reports. */
  position(): { cursor: number; action: HostAction | null } {
    return { cursor: this.cursor, action: this.schedule?.[this.cursor] ?? null };
  }
}
