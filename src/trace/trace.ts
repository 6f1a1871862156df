/**
 * A trace of a step, real or simulated, in one format: spans of work per worker, messages between
 * workers (flows), and memory counters. Times are milliseconds from the start of the step.
 */
export type SpanPhase = 'F' | 'B' | 'I' | 'W';

export interface Span {
  readonly worker: number;
  readonly phase: SpanPhase;
  readonly stage: number;
  readonly mb: number;
  readonly start: number;
  readonly end: number;
  /** The node, for a span of one task (coalesced spans of a whole stage have none). */
  readonly node?: number;
}

export interface Flow {
  readonly from: number;
  readonly to: number;
  readonly kind: 'activation' | 'gradient' | 'param';
  readonly mb: number;
  readonly sent: number;
  readonly received: number;
  readonly bytes: number;
}

export interface Counter {
  readonly worker: number;
  readonly time: number;
  /** Bytes of activations held for backwards on that worker. */
  readonly keptBytes: number;
}

export interface Trace {
  readonly source: 'real' | 'simulated';
  readonly workers: number;
  readonly spans: readonly Span[];
  readonly flows: readonly Flow[];
  readonly counters: readonly Counter[];
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
): { makespan: number; busy: number[]; idleFraction: number; bubbleVsIdeal: number | null } {
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
