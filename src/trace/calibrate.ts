import { InputError } from '../errors.ts';
import type { Span, Trace } from './trace.ts';

// Note [contended spans]
// A real trace's spans are wall-clock time. With more workers than cores (4 workers on this
// machine's 2 cores), a task shares its core with the tasks of other workers running at the same
// time, so its span is longer than the work it did. A simulator fed with those spans and told about
// the cores would count the sharing twice (measured here: 4 workers on 2 cores, traceCosts of the
// raw trace with `cores: 2` predicted 1F1B steps about 35% too long). `cpuTimeTrace` estimates each
// span's own work by assuming the cores are shared fairly: over each stretch of the span during
// which k spans of the trace run at once, the span got min(1, cores / k) of a core. Work outside
// any span (message handling) and other processes on the machine are not seen; a uniform slowdown
// from other processes stretches the real step and the estimated costs alike.

/**
 * The trace with every span shortened to the core time it got (Note [contended spans]): same start,
 * end = start + estimated work. Messages and counters are kept as they are.
 */
export function cpuTimeTrace(trace: Trace, cores: number): Trace {
  if (!(cores >= 1))
    throw new InputError(`cpuTimeTrace: cores must be >= 1, found ${cores}`, {
      expected: '>= 1',
      found: cores,
    });
  // Times where the number of running spans changes, and how many run from each until the next.
  const edges: [number, number][] = [];
  for (const s of trace.spans) edges.push([s.start, 1], [s.end, -1]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const times = new Float64Array(edges.length);
  const running = new Int32Array(edges.length);
  let n = 0;
  edges.forEach(([t, d], i) => {
    n += d;
    times[i] = t;
    running[i] = n;
  });
  const spans: Span[] = trace.spans.map((s) => {
    let i = lastAtOrBefore(times, s.start);
    let work = 0;
    let t = s.start;
    while (t < s.end) {
      const next = i + 1 < times.length ? Math.min(times[i + 1]!, s.end) : s.end;
      if (next > t) work += (next - t) * Math.min(1, cores / Math.max(1, running[i]!));
      t = Math.max(t, next);
      i++;
    }
    return { ...s, end: s.start + work };
  });
  return { ...trace, spans };
}

/** The index of the last time <= t (0 when none is). */
function lastAtOrBefore(times: Float64Array, t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return Math.max(0, lo - 1);
}

/**
 * One trace holding the spans and messages of several steps' traces (their times overlap): what
 * `traceCosts` averages per (node, phase) over all the steps.
 */
export function mergeTraces(traces: readonly Trace[]): Trace {
  if (traces.length === 0) throw new InputError('mergeTraces: expected at least one trace, found none');
  return {
    source: traces[0]!.source,
    workers: traces[0]!.workers,
    spans: traces.flatMap((t) => t.spans),
    flows: traces.flatMap((t) => t.flows),
    counters: traces.flatMap((t) => t.counters),
  };
}

/**
 * A link's latency from a real trace: the given quantile (default the lowest decile) of the delays
 * from send to receipt. A higher quantile would count the time a message waits for its receiver to
 * finish a task, which a simulator models by itself. Null when the trace has no messages.
 */
export function linkLatency(trace: Trace, quantile = 0.1): number | null {
  if (trace.flows.length === 0) return null;
  const delays = trace.flows.map((f) => f.received - f.sent).sort((a, b) => a - b);
  return Math.max(0, delays[Math.min(delays.length - 1, Math.floor(delays.length * quantile))]!);
}

/**
 * What one step of the whole model cost in real runs, for one pipeline replica: the totals that
 * `searchSchedule` shares out over the stages and microbatches of its candidates (Note [search
 * costs], `src/sim/search.ts`). Times in ms, bytes per step, averaged over the traces.
 */
export interface StepCosts {
  /** Every forward task of the step together (core time, with `measuredCores`). */
  forward: number;
  /** Every backward task (B, I and W) together. */
  backward: number;
  /** With a split backward in the traces: its I and W shares of `backward`. */
  input?: number;
  /** The weight-gradient half of the backward, for schedules that split it. */
  weight?: number;
  /** Bytes kept for backwards over the step: the sum of every rise of the workers' counters. */
  keptBytes: number;
  /** Bytes of activations crossing one stage boundary between workers (none: no boundary crossed). */
  activationBytes?: number;
}

/**
 * The step's totals from traces of real steps (one trace per step). With `measuredCores`, the spans
 * are first turned into the core time they got (Note [contended spans]). A trace of several replicas
 * counts the replicas that ran stage 0 and divides by them.
 */
export function stepCosts(traces: readonly Trace[], options: { measuredCores?: number } = {}): StepCosts {
  if (traces.length === 0) throw new InputError('stepCosts: expected at least one trace, found none');
  const time = { F: 0, B: 0, I: 0, W: 0 };
  let kept = 0;
  let crossing = 0;
  let boundaries = 0;
  let replicas = 0;
  for (const raw of traces) {
    const trace = options.measuredCores === undefined ? raw : cpuTimeTrace(raw, options.measuredCores);
    const workerOfStage = new Map<number, number>();
    const firstStage = new Set<number>();
    for (const s of trace.spans) {
      time[s.phase] += s.end - s.start;
      if (!workerOfStage.has(s.stage)) workerOfStage.set(s.stage, s.worker);
      if (s.stage === 0) firstStage.add(s.worker);
    }
    const copies = Math.max(1, firstStage.size);
    replicas += copies;
    // Kept bytes only rise in forward tasks and fall in backward ones; each counter follows a task.
    const last = new Map<number, number>();
    for (const c of trace.counters) {
      kept += Math.max(0, c.keptBytes - (last.get(c.worker) ?? 0));
      last.set(c.worker, c.keptBytes);
    }
    for (const f of trace.flows) if (f.kind === 'activation') crossing += f.bytes;
    for (const [s, w] of workerOfStage) {
      const next = workerOfStage.get(s + 1);
      if (next !== undefined && next !== w) boundaries += copies;
    }
  }
  const per = (x: number) => x / replicas;
  const backward = time.B + time.I + time.W;
  const split = time.I + time.W;
  return {
    forward: per(time.F),
    backward: per(backward),
    ...(split > 0
      ? { input: per((backward * time.I) / split), weight: per((backward * time.W) / split) }
      : {}),
    keptBytes: per(kept),
    ...(boundaries > 0 ? { activationBytes: crossing / boundaries } : {}),
  };
}
