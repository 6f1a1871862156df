import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { cpuTimeTrace, linkLatency, mergeTraces } from '../../src/trace/calibrate.ts';
import type { Span, Trace } from '../../src/trace/trace.ts';

const span = (worker: number, start: number, end: number): Span => ({
  worker,
  phase: 'F',
  stage: worker,
  mb: 0,
  start,
  end,
});
const trace = (spans: Span[], delays: number[] = []): Trace => ({
  source: 'real',
  workers: 3,
  spans,
  flows: delays.map((d, i) => ({
    from: 0,
    to: 1,
    kind: 'activation',
    mb: i,
    sent: i,
    received: i + d,
    bytes: 16,
  })),
  counters: [],
});

describe('cpuTimeTrace: spans shortened to the core time they got (Note [contended spans])', () => {
  it('a span alone keeps its length; overlapping spans share the cores fairly', () => {
    // Worker 0 runs 0-10; worker 1 runs 5-15; worker 2 runs 5-10. On 2 cores, 5-10 has 3 spans at once.
    const out = cpuTimeTrace(trace([span(0, 0, 10), span(1, 5, 15), span(2, 5, 10)]), 2);
    const work = out.spans.map((s) => s.end - s.start);
    expect(work[0]).toBeCloseTo(5 + (5 * 2) / 3, 12);
    expect(work[1]).toBeCloseTo((5 * 2) / 3 + 5, 12);
    expect(work[2]).toBeCloseTo((5 * 2) / 3, 12);
    expect(out.spans.map((s) => s.start)).toEqual([0, 5, 5]);
  });

  it('with as many cores as spans nothing changes; the total never exceeds cores x wall time', () => {
    const spans = [span(0, 0, 4), span(1, 1, 5), span(2, 2, 3)];
    expect(cpuTimeTrace(trace(spans), 3).spans).toEqual(spans);
    const one = cpuTimeTrace(trace(spans), 1).spans.reduce((s, x) => s + x.end - x.start, 0);
    expect(one).toBeCloseTo(5, 12);
  });

  it('refuses fewer than one core', () => {
    expect(() => cpuTimeTrace(trace([]), 0)).toThrow(InputError);
  });
});

describe('linkLatency and mergeTraces', () => {
  it('the lowest decile of the send-to-receipt delays, null without messages', () => {
    const delays = [9, 1, 5, 3, 7, 2, 8, 4, 6, 10];
    expect(linkLatency(trace([], delays))).toBe(2);
    expect(linkLatency(trace([], delays), 0.5)).toBe(6);
    expect(linkLatency(trace([]))).toBeNull();
  });

  it('merges the spans and messages of several steps', () => {
    const merged = mergeTraces([trace([span(0, 0, 1)], [1]), trace([span(1, 0, 2)], [2, 3])]);
    expect(merged.spans).toHaveLength(2);
    expect(merged.flows).toHaveLength(3);
    expect(() => mergeTraces([])).toThrow(InputError);
  });
});
