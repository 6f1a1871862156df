import type { Task } from './host-types.ts';
import type { NodeActor } from './node-actor.ts';

/**
 * 'forward'; 'backward' (the whole VJP); 'input' and 'weight' (the two parts of a split VJP: the
 * gradients of activations first, the gradients of parameters later).
 */
export type TaskPhase = 'forward' | 'backward' | 'input' | 'weight';

/** One action of a pipeline schedule for this worker: run every task of `stage` for microbatch `mb`. */
export interface HostAction {
  /** Forward, backward, or the input- or weight-gradient half of a split backward. */
  readonly kind: 'F' | 'B' | 'I' | 'W';
  /** The pipeline stage. */
  readonly stage: number;
  /** The microbatch. */
  readonly mb: number;
}

/**
 * What the queue reads of a host's actors, as columns (one entry per actor): its stage, and whether it
 * has a backward task (1) and a weight part (1). A host knows them before it builds its actors.
 */
export interface ActorColumns {
  readonly stage: ArrayLike<number>;
  readonly backward: ArrayLike<number>;
  readonly weight: ArrayLike<number>;
}

/** The columns of actors at hand. */
export function actorColumns(
  actors: readonly Pick<NodeActor<unknown>, 'stage' | 'hasBackward' | 'hasWeightPart'>[],
): ActorColumns {
  return {
    stage: actors.map((a) => a.stage),
    backward: actors.map((a) => (a.hasBackward ? 1 : 0)),
    weight: actors.map((a) => (a.hasWeightPart ? 1 : 0)),
  };
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
  forEach(f: (x: X) => void): void {
    for (let i = this.head; i < this.items.length; i++) f(this.items[i]!);
  }
}

// The kinds of work an action covers, as indices of the per-kind tables.
const F = 0;
const G = 1; // gradients complete: ready for a B or an I action
const W = 2;
const KINDS = 3;

function kindOfPhase(phase: TaskPhase): number {
  return phase === 'forward' ? F : phase === 'weight' ? W : G;
}

function kindOfAction(kind: HostAction['kind']): number {
  return kind === 'F' ? F : kind === 'W' ? W : G;
}

/**
 * The ready tasks of a host, and which one runs next. Without a schedule: dataflow order, backward
 * tasks first. With a schedule: the worker's actions in order; an action takes the ready tasks of its
 * (stage, microbatch) until every task it covers has run, and nothing else runs meanwhile. This is the
 * only place a schedule is read, and it reads it as data: no schedule has code of its own.
 *
 * The per-(kind, stage, microbatch) tables are typed or dense arrays sized when the step starts, over
 * the stages this host has actors of (a host of stage 200 of 256 has one local stage, not 201): a
 * long pipeline has millions of (kind, stage, microbatch) keys per step, too many for maps.
 */
export class TaskQueue<T> {
  /** The host's stages, densely numbered: `local[stage]` (-1: no actor of that stage here). */
  private readonly local: Int32Array;
  private readonly stageCount: number;
  /** Tasks per local stage that an F, B/I and W action covers. */
  private readonly need: Int32Array;
  private microbatches = 1;
  private readonly fifo = [new Fifo<Task<T>>(), new Fifo<Task<T>>()];
  /**
   * Ready tasks waiting for their action, by key(kind, stage, mb); a list is dropped as soon as it
   * empties (a long pipeline has millions of keys, and only a few hold tasks at any time).
   */
  private buckets: (Task<T>[] | undefined)[] = [];
  /** Tasks run, by key(kind, stage, mb). */
  private doneCounts = new Int32Array(0);
  /** Actors that ran their last backward task, by local stage * microbatches + mb. */
  private finished = new Int32Array(0);
  private schedule: readonly HostAction[] | null = null;
  /** The step follows the schedule (an inference step runs in dataflow order: it has no backward actions to wait for). */
  private following = false;
  /**
   * The schedule compiled for the step's microbatch count, per action: the key of the tasks it
   * covers (-1: none on this host), how many there are, and the phase it runs them in (B/I decide
   * which backward a gradient-complete task runs). Flat arrays: the host reads one action per task
   * it runs, and chasing millions of action objects through memory was a measurable cost.
   */
  private actionKey = new Int32Array(0);
  private actionNeed = new Int32Array(0);
  private actionPhase: TaskPhase[] = [];
  private cursor = 0;
  /** Microbatches in flight per stage (forward done, backward not yet), and the peak of each. */
  readonly inFlight: number[] = [];
  readonly peakInFlight: number[] = [];
  /**
   * The same summed over this host's stages at each instant, and its peak: what the worker holds at
   * once, which is not the sum of its stages' peaks (they peak at different times).
   */
  hostInFlight = 0;
  hostPeakInFlight = 0;
  /** The microbatch count the actions were compiled for (-1: not yet, or the schedule changed). */
  private compiledFor = -1;
  /** The task `peek` took, for the next `take`. */
  private peeked: Task<T> | null = null;
  /**
   * Whether a ready task may start now (Note [activation credits]: a forward waits for its channels'
   * credits); null: every one may. In dataflow order a task it holds back waits in `gated` and the
   * queue runs others; under a schedule the action waits.
   */
  gate: ((task: Task<T>) => boolean) | null = null;
  private gated: Task<T>[] = [];

  constructor(actors: ActorColumns) {
    const { stage, backward, weight } = actors;
    const n = stage.length;
    let stages = 0;
    for (let k = 0; k < n; k++) stages = Math.max(stages, stage[k]! + 1);
    this.local = new Int32Array(stages).fill(-1);
    let count = 0;
    for (let k = 0; k < n; k++) if (this.local[stage[k]!] === -1) this.local[stage[k]!] = count++;
    this.stageCount = count;
    this.need = new Int32Array(KINDS * count);
    for (let k = 0; k < n; k++) {
      const s = this.local[stage[k]!]!;
      this.need[F * count + s]!++;
      if (backward[k]) this.need[G * count + s]!++;
      if (weight[k]) this.need[W * count + s]!++;
    }
    for (let s = 0; s < stages; s++) {
      this.inFlight.push(0);
      this.peakInFlight.push(0);
    }
  }

  setSchedule(actions: readonly HostAction[] | null): void {
    this.schedule = actions;
    // Compiled at the next start: the action keys depend on the microbatch count.
    this.compiledFor = -1;
  }

  /** `followSchedule` false: this step runs in dataflow order whatever the schedule. */
  start(microbatches: number, followSchedule = true): void {
    this.microbatches = microbatches;
    this.following = followSchedule && this.schedule !== null;
    const size = KINDS * this.stageCount * microbatches;
    if (this.doneCounts.length !== size) {
      this.doneCounts = new Int32Array(size);
      this.finished = new Int32Array(this.stageCount * microbatches);
    }
    if (this.compiledFor !== microbatches) this.compileSchedule();
    // Only a schedule's actions look tasks up by key.
    const keys = this.following ? size : 0;
    if (this.buckets.length !== keys) this.buckets = new Array(keys).fill(undefined);
    this.clear();
  }

  private compileSchedule(): void {
    this.compiledFor = this.microbatches;
    const actions = this.schedule ?? [];
    this.actionKey = new Int32Array(actions.length);
    this.actionNeed = new Int32Array(actions.length);
    this.actionPhase = new Array(actions.length);
    for (let i = 0; i < actions.length; i++) {
      const a = actions[i]!;
      const kind = kindOfAction(a.kind);
      const need = this.needed(kind, a.stage);
      this.actionNeed[i] = need;
      this.actionKey[i] = need === 0 ? -1 : this.key(kind, a.stage, a.mb);
      this.actionPhase[i] =
        a.kind === 'F' ? 'forward' : a.kind === 'B' ? 'backward' : a.kind === 'I' ? 'input' : 'weight';
    }
  }

  clear(): void {
    this.peeked = null;
    this.gated = [];
    this.fifo[0] = new Fifo();
    this.fifo[1] = new Fifo();
    this.buckets.fill(undefined);
    this.doneCounts.fill(0);
    this.finished.fill(0);
    this.cursor = 0;
    this.inFlight.fill(0);
    this.peakInFlight.fill(0);
    this.hostInFlight = 0;
    this.hostPeakInFlight = 0;
  }

  /** The tasks an action of `kind` on `stage` covers (0 for a stage this host has no actor of). */
  private needed(kind: number, stage: number): number {
    const s = stage >= 0 && stage < this.local.length ? this.local[stage]! : -1;
    return s === -1 ? 0 : this.need[kind * this.stageCount + s]!;
  }

  /** Only for stages this host has actors of (every task's stage is one). */
  private key(kind: number, stage: number, mb: number): number {
    return (kind * this.stageCount + this.local[stage]!) * this.microbatches + mb;
  }

  /**
   * A task of `actor` becomes ready (`value`: an input node's fed value). One object shape for every
   * task.
   */
  enqueue(actor: NodeActor<T>, phase: 'forward' | 'backward', mb: number, value?: T): void {
    const { node, stage, replica } = actor;
    this.ready({ phase, node: node.id, stage, replica, mb, actor, value });
  }

  /** A task whose inputs (forward) or gradient contributions (backward) are all there. */
  ready(task: Task<T>): void {
    if (!this.following) {
      this.fifo[task.phase === 'forward' ? 0 : 1]!.push(task);
      return;
    }
    const k = this.key(kindOfPhase(task.phase), task.stage, task.mb);
    const list = this.buckets[k];
    if (list === undefined) this.buckets[k] = [task];
    else list.push(task);
  }

  /** The task `take` returns next (taken now, and held until then), or null when none may run now. */
  peek(): Task<T> | null {
    this.peeked ??= this.next();
    return this.peeked;
  }

  /** The next task to run, or null when none may run now. */
  take(): Task<T> | null {
    const task = this.peeked ?? this.next();
    this.peeked = null;
    return task;
  }

  /** Calls `f` on the value of every task waiting here (an input's feed), for Note [step arena]. */
  values(f: (value: T | undefined) => void): void {
    const visit = (task: Task<T>) => f(task.value);
    this.fifo[0]!.forEach(visit);
    this.fifo[1]!.forEach(visit);
    for (const list of this.buckets) list?.forEach(visit);
    this.gated.forEach(visit);
    if (this.peeked !== null) visit(this.peeked);
  }

  /** The gate may let tasks through now: the ones it held go back in line. */
  release(): void {
    for (const task of this.gated) this.fifo[0]!.push(task);
    this.gated = [];
  }

  private next(): Task<T> | null {
    if (!this.following) {
      const backward = this.fifo[1]!.shift();
      if (backward !== undefined) return backward;
      for (let task = this.fifo[0]!.shift(); task !== undefined; task = this.fifo[0]!.shift()) {
        if (this.gate === null || this.gate(task)) return task;
        this.gated.push(task);
      }
      return null;
    }
    const keys = this.actionKey;
    while (this.cursor < keys.length) {
      const k = keys[this.cursor]!;
      if (k === -1 || this.doneCounts[k]! >= this.actionNeed[this.cursor]!) {
        this.cursor++;
        continue;
      }
      const list = this.buckets[k];
      const task = list?.pop();
      if (task === undefined) return null;
      const phase = this.actionPhase[this.cursor]!;
      if (this.gate !== null && phase === 'forward' && !this.gate(task)) {
        list!.push(task);
        return null;
      }
      if (list!.length === 0) this.buckets[k] = undefined;
      return phase === task.phase ? task : { ...task, phase };
    }
    return null;
  }

  /** Bookkeeping after a task ran: what the schedule's actions and the in-flight counts see. */
  done(task: Task<T>): void {
    const { stage, mb, phase, actor } = task;
    const n = ++this.doneCounts[this.key(kindOfPhase(phase), stage, mb)]!;
    if (phase === 'forward') {
      if (n === this.needed(F, stage) && this.needed(G, stage) > 0) {
        this.inFlight[stage]!++;
        if (this.inFlight[stage]! > this.peakInFlight[stage]!)
          this.peakInFlight[stage] = this.inFlight[stage]!;
        if (++this.hostInFlight > this.hostPeakInFlight) this.hostPeakInFlight = this.hostInFlight;
      }
      return;
    }
    if (phase === 'input' && actor.hasWeightPart) {
      this.ready({ ...task, phase: 'weight' });
      return;
    }
    // A microbatch leaves a stage when every actor of the stage has run its last backward task.
    const f = ++this.finished[this.local[stage]! * this.microbatches + mb]!;
    if (f === this.needed(G, stage)) {
      this.inFlight[stage]!--;
      this.hostInFlight--;
    }
  }
}
