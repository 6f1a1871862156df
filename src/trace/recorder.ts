import type { TaskInfo } from '../actor/host.ts';
import { type Counter, type Flow, phaseOf, type Span, type StepMark, type Trace } from './trace.ts';

/** Wall-clock milliseconds comparable across threads (each thread's timeOrigin differs). */
export const wallClock = (): number => performance.timeOrigin + performance.now();

export interface FlowEnd {
  readonly peer: number;
  /** The message's number on its link (FIFO per port, so both ends count the same). */
  readonly seq: number;
  readonly time: number;
  readonly kind: Flow['kind'];
  readonly mb: number;
  readonly bytes: number;
}

/** What one worker recorded: task spans, both ends of its messages, and memory counters. */
export interface WorkerTrace {
  readonly worker: number;
  readonly spans: Span[];
  readonly sent: FlowEnd[];
  readonly received: FlowEnd[];
  readonly counters: Counter[];
  /** Note [step marks]. */
  readonly marks: StepMark[];
}

/**
 * Records one worker's part of a step's trace. Times are wall-clock milliseconds; `assembleTrace`
 * puts the workers' parts together, matches each send with its receive, and makes times relative to
 * the step's start.
 */
export class TraceRecorder {
  enabled = false;
  private part: WorkerTrace;
  private readonly sentSeq = new Map<number, number>();
  private readonly receivedSeq = new Map<number, number>();

  constructor(
    readonly worker: number,
    private readonly clock: () => number = wallClock,
  ) {
    this.part = this.empty();
  }

  private empty(): WorkerTrace {
    return { worker: this.worker, spans: [], sent: [], received: [], counters: [], marks: [] };
  }

  now(): number {
    return this.clock();
  }

  task(task: TaskInfo, start: number, end: number, keptBytes: number): void {
    this.part.spans.push({
      worker: this.worker,
      phase: phaseOf(task.phase),
      stage: task.stage,
      mb: task.mb,
      start,
      end,
      node: task.node,
    });
    this.part.counters.push({ worker: this.worker, time: end, keptBytes });
  }

  /** A data message to `peer` (counted whether or not tracing is on, so sequence numbers stay aligned). */
  sent(peer: number, kind: Flow['kind'], mb: number, bytes: number): void {
    const seq = this.sentSeq.get(peer) ?? 0;
    this.sentSeq.set(peer, seq + 1);
    if (this.enabled) this.part.sent.push({ peer, seq, time: this.clock(), kind, mb, bytes });
  }

  received(peer: number, kind: Flow['kind'], mb: number, bytes: number): void {
    const seq = this.receivedSeq.get(peer) ?? 0;
    this.receivedSeq.set(peer, seq + 1);
    if (this.enabled) this.part.received.push({ peer, seq, time: this.clock(), kind, mb, bytes });
  }

  /** A step mark (Note [step marks]) that began at `time` and ended now; recorded only when enabled. */
  mark(mark: Omit<StepMark, 'worker' | 'time' | 'end'>, time: number): void {
    if (this.enabled) this.part.marks.push({ worker: this.worker, ...mark, time, end: this.clock() });
  }

  /** The part recorded since the last take. */
  take(): WorkerTrace {
    const part = this.part;
    this.part = this.empty();
    return part;
  }
}

/** One trace from the workers' parts, times relative to `origin` (wall-clock ms of the step's start). */
export function assembleTrace(parts: readonly WorkerTrace[], workers: number, origin: number): Trace {
  const spans: Span[] = [];
  const counters: Counter[] = [];
  const marks: StepMark[] = [];
  const flows: Flow[] = [];
  const receives = new Map<string, FlowEnd>();
  for (const p of parts) {
    for (const s of p.spans) spans.push({ ...s, start: s.start - origin, end: s.end - origin });
    for (const c of p.counters) counters.push({ ...c, time: c.time - origin });
    for (const m of p.marks) marks.push({ ...m, time: m.time - origin, end: m.end - origin });
    for (const r of p.received) receives.set(`${r.peer}>${p.worker}#${r.seq}`, r);
  }
  for (const p of parts) {
    for (const s of p.sent) {
      const r = receives.get(`${p.worker}>${s.peer}#${s.seq}`);
      if (r === undefined) continue;
      flows.push({
        from: p.worker,
        to: s.peer,
        kind: s.kind,
        mb: s.mb,
        sent: s.time - origin,
        received: r.time - origin,
        bytes: s.bytes,
      });
    }
  }
  spans.sort((a, b) => a.start - b.start);
  marks.sort((a, b) => a.time - b.time);
  return { source: 'real', workers, spans, flows, counters, marks };
}
