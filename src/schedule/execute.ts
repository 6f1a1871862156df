import type { Action, ActionKind, OverlappedAction, Schedule } from './action.ts';
import type { ScheduleShape } from './placement.ts';

/**
 * A dry run of a schedule: every worker walks its own list in order, and an action starts when its
 * worker is free and the events it depends on have happened. Sends never block (a MessagePort queues
 * without bound); a receive blocks until its send has run. If at some point no worker can advance
 * before all lists are done, the schedule deadlocks, and `blocked` says where each worker is stuck.
 *
 * Note [schedule events]: what an action waits for is an *event* of a stage and microbatch:
 *   F       the stage's forward ran
 *   G       the stage's input gradient exists: its B ran, or its I ran (a split backward)
 *   W       the stage's weight gradient ran
 *   SEND_F, RECV_F, SEND_B, RECV_B   that communication action ran
 * Dependencies, for stage s of S and one microbatch:
 *   F(s)       needs F(s-1) when s > 0: through RECV_F(s) when s-1 is on another worker and the
 *              schedule has explicit communication, directly otherwise
 *   B/I(s)     needs F(s), and G(s+1) when s < S-1 (through RECV_B(s) across workers, as above)
 *   W(s)       needs G(s) (its I)
 *   SEND_F(s)  needs F(s);   RECV_F(s) needs SEND_F(s-1)
 *   SEND_B(s)  needs G(s);   RECV_B(s) needs SEND_B(s+1)
 * An overlapped pair waits for what both its halves need, and makes both halves' events when it ends
 * (Note [overlapped F and B]).
 */
export const EVENTS = ['F', 'G', 'W', 'SEND_F', 'RECV_F', 'SEND_B', 'RECV_B'] as const;
export type ScheduleEvent = (typeof EVENTS)[number];
const [F, G, W, SEND_F, RECV_F, SEND_B, RECV_B] = [0, 1, 2, 3, 4, 5, 6];
const EVENT_OF_KIND: Record<ActionKind, number> = { F, B: G, I: G, W, SEND_F, RECV_F, SEND_B, RECV_B };

export interface Dependency {
  readonly event: ScheduleEvent;
  readonly stage: number;
  readonly microbatch: number;
}

/**
 * The events of one schedule shape numbered 0 .. size-1, so that the dry run keeps them in flat typed
 * arrays, and the dependency rule of Note [schedule events] on those numbers.
 */
export class EventIndex {
  readonly size: number;
  private readonly perEvent: number;
  /** crossesNext[s]: the hop from stage s to s+1 goes through SEND/RECV actions. */
  private readonly crossesNext: Uint8Array;

  constructor(readonly shape: ScheduleShape) {
    const { stages, microbatches, workerOfStage, explicitCommunication } = shape;
    this.perEvent = stages * microbatches;
    this.size = EVENTS.length * this.perEvent;
    this.crossesNext = new Uint8Array(stages);
    for (let s = 0; s + 1 < stages; s++)
      this.crossesNext[s] = explicitCommunication && workerOfStage[s] !== workerOfStage[s + 1] ? 1 : 0;
  }

  key(event: number, stage: number, microbatch: number): number {
    return event * this.perEvent + stage * this.shape.microbatches + microbatch;
  }

  /** The key of the event `a` produces. */
  keyOf(a: Action): number {
    return this.key(EVENT_OF_KIND[a.kind], a.stage, a.microbatch);
  }

  /**
   * Writes the keys of the events `a` waits for into `out` from index `at`; returns how many (0 to 2).
   */
  dependencyKeys(a: Action, out: number[], at = 0): number {
    const { stage: s, microbatch: mb } = a;
    switch (a.kind) {
      case 'F':
        if (s === 0) return 0;
        out[at] = this.crossesNext[s - 1] ? this.key(RECV_F, s, mb) : this.key(F, s - 1, mb);
        return 1;
      case 'B':
      case 'I':
        out[at] = this.key(F, s, mb);
        if (s === this.shape.stages - 1) return 1;
        out[at + 1] = this.crossesNext[s] ? this.key(RECV_B, s, mb) : this.key(G, s + 1, mb);
        return 2;
      case 'W':
      case 'SEND_B':
        out[at] = this.key(G, s, mb);
        return 1;
      case 'SEND_F':
        out[at] = this.key(F, s, mb);
        return 1;
      case 'RECV_F':
        out[at] = this.key(SEND_F, s - 1, mb);
        return 1;
      case 'RECV_B':
        out[at] = this.key(SEND_B, s + 1, mb);
        return 1;
    }
  }

  /** The keys a slot waits for (both halves of a pair), into `out`; returns how many (0 to 4). */
  slotDependencyKeys(slot: Action | OverlappedAction, out: number[]): number {
    if (slot.kind !== 'OVERLAP_F_B') return this.dependencyKeys(slot, out);
    const n = this.dependencyKeys(slot.forward, out);
    return n + this.dependencyKeys(slot.backward, out, n);
  }

  /** What `a` waits for (Note [schedule events]). */
  dependencies(a: Action): Dependency[] {
    const keys: number[] = [];
    const n = this.dependencyKeys(a, keys);
    return keys.slice(0, n).map((k) => this.decode(k));
  }

  decode(key: number): Dependency {
    const { microbatches } = this.shape;
    const inEvent = key % this.perEvent;
    return {
      event: EVENTS[Math.floor(key / this.perEvent)]!,
      stage: Math.floor(inEvent / microbatches),
      microbatch: inEvent % microbatches,
    };
  }
}

/** Formats an event like an action: `1F0`, and `1B0/1I0` for an input gradient. */
export function formatDependency(d: Dependency): string {
  if (d.event === 'G') return `${d.stage}B${d.microbatch}/${d.stage}I${d.microbatch}`;
  return `${d.stage}${d.event}${d.microbatch}`;
}

export interface Blocked {
  readonly worker: number;
  /** Index of the action in the worker's list (idle slots count). */
  readonly step: number;
  readonly action: Action | OverlappedAction;
  readonly waitsFor: Dependency;
}

export interface Execution {
  /** Per worker and slot, when the action started and finished; NaN for idle slots and unrun actions. */
  readonly start: readonly Float64Array[];
  readonly finish: readonly Float64Array[];
  /** The latest finish time (0 for an empty schedule). */
  readonly makespan: number;
  /** Empty when every action ran; otherwise the deadlock: one entry per stuck worker. */
  readonly blocked: readonly Blocked[];
}

/**
 * Events an action waits for beyond Note [schedule events] (the credits of Note [activation
 * credits]): writes their keys (`EventIndex.key`) into `out` from index `n`, returns the new count.
 */
export type ExtraDependencies = (a: Action, events: EventIndex, out: number[], n: number) => number;

/**
 * Runs `schedule` under `cost` (time of one slot: an action or an overlapped pair; 0 by default, which
 * is enough to find deadlocks). Linear in the number of actions: a worker that cannot advance parks on
 * the one event it waits for and is woken when that event happens. Expects well-formed actions within
 * `shape`.
 */
export function execute(
  schedule: Schedule,
  shape: ScheduleShape,
  cost: (slot: Action | OverlappedAction) => number = () => 0,
  extra?: ExtraDependencies,
): Execution {
  const events = new EventIndex(shape);
  // Finish time of each event, NaN until it happens.
  const done = new Float64Array(events.size).fill(Number.NaN);
  const parked = new Map<number, number[]>();
  const start = schedule.map((list) => new Float64Array(list.length).fill(Number.NaN));
  const finish = schedule.map((list) => new Float64Array(list.length).fill(Number.NaN));
  const next = new Array<number>(schedule.length).fill(0);
  const clock = new Array<number>(schedule.length).fill(0);
  const waiting = new Array<number>(schedule.length).fill(-1);
  const queue = schedule.map((_, w) => w);
  const happen = (k: number, time: number) => {
    done[k] = time;
    const woken = parked.get(k);
    if (woken) {
      parked.delete(k);
      for (const v of woken) queue.push(v);
    }
  };
  const deps: number[] = [0, 0, 0, 0];

  while (queue.length > 0) {
    const w = queue.pop()!;
    const list = schedule[w]!;
    const starts = start[w]!;
    const finishes = finish[w]!;
    let i = next[w]!;
    let time = clock[w]!;
    waiting[w] = -1;
    for (; i < list.length; i++) {
      const a = list[i];
      if (!a) continue;
      let ready = time;
      let n = events.slotDependencyKeys(a, deps);
      if (extra !== undefined) {
        if (a.kind === 'OVERLAP_F_B') {
          n = extra(a.forward, events, deps, n);
          n = extra(a.backward, events, deps, n);
        } else n = extra(a, events, deps, n);
      }
      for (let d = 0; d < n; d++) {
        const t = done[deps[d]!]!;
        if (Number.isNaN(t)) {
          waiting[w] = deps[d]!;
          break;
        }
        if (t > ready) ready = t;
      }
      if (waiting[w]! >= 0) {
        const workers = parked.get(waiting[w]!);
        if (workers) workers.push(w);
        else parked.set(waiting[w]!, [w]);
        break;
      }
      time = ready + cost(a);
      starts[i] = ready;
      finishes[i] = time;
      if (a.kind === 'OVERLAP_F_B') {
        happen(events.keyOf(a.forward), time);
        happen(events.keyOf(a.backward), time);
      } else happen(events.keyOf(a), time);
    }
    next[w] = i;
    clock[w] = time;
  }

  const blocked: Blocked[] = [];
  schedule.forEach((list, w) => {
    const k = waiting[w]!;
    if (k >= 0)
      blocked.push({ worker: w, step: next[w]!, action: list[next[w]!]!, waitsFor: events.decode(k) });
  });
  return { start, finish, makespan: Math.max(0, ...clock), blocked };
}
