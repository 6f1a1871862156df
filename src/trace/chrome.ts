import { coalesce, type Trace } from './trace.ts';

interface ChromeEvent {
  name: string;
  ph: string;
  pid: number;
  tid?: number;
  ts?: number;
  dur?: number;
  id?: number;
  bp?: string;
  cat?: string;
  args?: Record<string, unknown>;
}

/**
 * A trace as Chrome trace JSON (the format Perfetto and chrome://tracing open): one track per worker,
 * a complete event per span, a flow arrow per message (send -> receive), and a counter of the bytes
 * each worker keeps for backwards. Spans are coalesced per (phase, stage, microbatch) unless `tasks`.
 */
export function toChromeTrace(
  trace: Trace,
  options: { tasks?: boolean } = {},
): {
  /** The events: metadata, complete events, flow events and counters. */
  traceEvents: ChromeEvent[];
  /** 'ms'. */
  displayTimeUnit: string;
} {
  const events: ChromeEvent[] = [
    { name: 'process_name', ph: 'M', pid: 0, args: { name: `backflow (${trace.source})` } },
  ];
  for (let w = 0; w < trace.workers; w++) {
    events.push({ name: 'thread_name', ph: 'M', pid: 0, tid: w, args: { name: `worker ${w}` } });
    events.push({ name: 'thread_sort_index', ph: 'M', pid: 0, tid: w, args: { sort_index: w } });
  }
  const us = (ms: number) => Math.round(ms * 1000 * 1000) / 1000;
  const spans = options.tasks ? trace.spans : coalesce(trace.spans);
  for (const s of spans) {
    events.push({
      name: `${s.phase}${s.mb}`,
      cat: s.phase,
      ph: 'X',
      pid: 0,
      tid: s.worker,
      ts: us(s.start),
      dur: us(s.end - s.start),
      args: { stage: s.stage, microbatch: s.mb, ...(s.node !== undefined ? { node: s.node } : {}) },
    });
  }
  trace.flows.forEach((f, id) => {
    events.push({
      name: f.kind,
      cat: 'message',
      ph: 's',
      id,
      pid: 0,
      tid: f.from,
      ts: us(f.sent),
      args: { bytes: f.bytes, microbatch: f.mb },
    });
    events.push({
      name: f.kind,
      cat: 'message',
      ph: 'f',
      bp: 'e',
      id,
      pid: 0,
      tid: f.to,
      ts: us(f.received),
    });
  });
  for (const c of trace.counters) {
    events.push({
      name: `kept bytes, worker ${c.worker}`,
      ph: 'C',
      pid: 0,
      ts: us(c.time),
      args: { bytes: c.keptBytes },
    });
  }
  return { traceEvents: events, displayTimeUnit: 'ms' };
}
