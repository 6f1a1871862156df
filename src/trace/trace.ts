// A trace of a step, real or simulated, in one format: spans of work per worker, messages between
// workers (flows), and memory counters. Times are milliseconds from the start of the step.

/** What a span did: F forward, B backward, I and W the input- and weight-gradient halves of a split backward. */
export type SpanPhase = 'F' | 'B' | 'I' | 'W';

/** A task (or, coalesced, a run of tasks) on one worker: what it computed and when. */
export interface Span {
  /** The worker that ran it. */
  readonly worker: number;
  /** Forward, backward, or a half of a split backward. */
  readonly phase: SpanPhase;
  /** The stage of its node (`plan.stageOf`). */
  readonly stage: number;
  /** The microbatch. */
  readonly mb: number;
  /** When it started, in milliseconds from the start of the step. */
  readonly start: number;
  /** When it ended, in milliseconds from the start of the step. */
  readonly end: number;
  /** The node, for a span of one task (coalesced spans of a whole stage have none). */
  readonly node?: number;
}

/** A message between two workers: a value, a gradient or a parameter, when it left and when it arrived. */
export interface Flow {
  /** The sending worker. */
  readonly from: number;
  /** The receiving worker. */
  readonly to: number;
  /** What it carried: an activation forward, a gradient contribution backward, or a parameter value. */
  readonly kind: 'activation' | 'gradient' | 'param';
  /** The microbatch. */
  readonly mb: number;
  /** When it left, in milliseconds from the start of the step. */
  readonly sent: number;
  /** When it arrived, in milliseconds from the start of the step. */
  readonly received: number;
  /** The bytes of tensor data it carried. */
  readonly bytes: number;
}

/** A sample of one worker's memory. */
export interface Counter {
  /** The worker. */
  readonly worker: number;
  /** When, in milliseconds from the start of the step. */
  readonly time: number;
  /** Bytes of activations held for backwards on that worker. */
  readonly keptBytes: number;
}

// Note [step marks]
// Task spans and messages do not show a step's hops: when a host took the step's start or the last
// step's update, when its envelopes left (a link posts once per event-loop turn, after the tasks of
// a time slice: Note [flush cadence]), when it took each envelope in and how long that took (a
// parameter's gradient is summed as its last contribution arrives), and when each report left for the
// coordinator. A real trace records them as marks, each on the recording worker's wall clock, so a
// step's critical path can be followed from the coordinator's start to its last report and on to
// the next start (test/bench/step-profile.ts). Messages wait in a port's queue while the thread
// runs a task: a 'receive' mark is when the host took the envelope, not when it arrived.

/** What a step mark marks (Note [step marks]). */
export type StepMarkKind = 'start' | 'update' | 'report' | 'post' | 'receive';

/**
 * An instant (or a short interval) of a step on one worker, beyond its tasks and messages (Note [step
 * marks]): the step's start or an update taken, a report queued for the coordinator, an envelope
 * posted to a peer or taken from one.
 */
export interface StepMark {
  /** The worker that recorded it. */
  readonly worker: number;
  /** The step it belongs to: the update's step for 'update' and its 'updated' report, else the last start taken. */
  readonly step: number;
  /** What happened. */
  readonly what: StepMarkKind;
  /** When it began, in milliseconds from the start of the step (wall clock, before `assembleTrace`). */
  readonly time: number;
  /** When it ended ('start', 'update', 'post', 'receive': the host's work on it); `time` otherwise. */
  readonly end: number;
  /** 'post': the worker the envelope went to; 'receive': the one it came from (-1: the coordinator). */
  readonly peer?: number;
  /** 'report': the report's kind ('loss', 'gradNorm', 'grad', 'updated' ...). */
  readonly report?: string;
  /** 'report': the node it is about (a parameter, the loss), when it names one. */
  readonly node?: number;
}

/**
 * A trace of a step, real (`trace: true`) or simulated, in one format: spans of work per worker,
 * messages between workers (flows), and memory counters. Times are milliseconds from the start of
 * the step.
 */
export interface Trace {
  /** Recorded by the runtime, or made by the simulator. */
  readonly source: 'real' | 'simulated';
  /** The number of workers. */
  readonly workers: number;
  /** The tasks each worker ran. */
  readonly spans: readonly Span[];
  /** The messages between workers. */
  readonly flows: readonly Flow[];
  /** Bytes kept for backwards on each worker, over time. */
  readonly counters: readonly Counter[];
  /** A real trace's step marks (Note [step marks]): starts, updates, reports, envelopes in and out. */
  readonly marks?: readonly StepMark[];
}

export function phaseOf(phase: 'forward' | 'backward' | 'input' | 'weight'): SpanPhase {
  return phase === 'forward' ? 'F' : phase === 'backward' ? 'B' : phase === 'input' ? 'I' : 'W';
}

/**
 * Merges back-to-back task spans of the same worker, phase, stage and microbatch into one span: a
 * pipeline's picture (F of stage 1 for microbatch 3) rather than one block per node.
 */
export function coalesce(spans: readonly Span[], gapMs = 0): Span[] {
  const byWorker = new Map<number, Span[]>();
  for (const s of spans) {
    const list = byWorker.get(s.worker) ?? [];
    list.push(s);
    byWorker.set(s.worker, list);
  }
  const out: Span[] = [];
  for (const list of byWorker.values()) {
    list.sort((a, b) => a.start - b.start);
    let cur: Span | null = null as Span | null;
    for (const s of list) {
      if (
        cur !== null &&
        cur.phase === s.phase &&
        cur.stage === s.stage &&
        cur.mb === s.mb &&
        s.start - cur.end <= gapMs
      ) {
        cur = {
          worker: cur.worker,
          phase: cur.phase,
          stage: cur.stage,
          mb: cur.mb,
          start: cur.start,
          end: Math.max(cur.end, s.end),
        };
        continue;
      }
      if (cur !== null) out.push(cur);
      cur = { worker: s.worker, phase: s.phase, stage: s.stage, mb: s.mb, start: s.start, end: s.end };
    }
    if (cur !== null) out.push(cur);
  }
  return out.sort((a, b) => a.worker - b.worker || a.start - b.start);
}

/** Busy time per worker, makespan and the two bubble conventions. */
export function traceStats(
  trace: Trace,
  idealMs?: number,
): {
  /** From the first span's start to the last one's end, in milliseconds. */
  makespan: number;
  /** Milliseconds of spans per worker. */
  busy: number[];
  /** 1 - busy / (workers x makespan). */
  idleFraction: number;
  /** (makespan - idealMs) / idealMs, or null without `idealMs`. */
  bubbleVsIdeal: number | null;
} {
  const busy = new Array<number>(trace.workers).fill(0);
  let start = Number.POSITIVE_INFINITY;
  let end = 0;
  for (const s of trace.spans) {
    busy[s.worker]! += s.end - s.start;
    if (s.start < start) start = s.start;
    if (s.end > end) end = s.end;
  }
  const makespan = trace.spans.length === 0 ? 0 : end - start;
  const total = busy.reduce((a, b) => a + b, 0);
  const idleFraction = makespan === 0 ? 0 : 1 - total / (trace.workers * makespan);
  return {
    makespan,
    busy,
    idleFraction,
    bubbleVsIdeal: idealMs === undefined ? null : (makespan - idealMs) / idealMs,
  };
}
