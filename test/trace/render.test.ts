// The trace renderers: Chrome trace JSON and SVG timelines, on a simulated pipeline step (the same
// Trace type a real step returns).
import { describe, expect, it } from 'vitest';
import { simulatePipeline } from '../../src/sim/pipeline.ts';
import { toChromeTrace } from '../../src/trace/chrome.ts';
import { timelineSvg } from '../../src/trace/svg.ts';
import { coalesce } from '../../src/trace/trace.ts';

describe('trace rendering', () => {
  const small = simulatePipeline({
    schedule: '1f1b',
    workers: 4,
    microbatches: 8,
    costs: { forward: 1, backward: 2 },
  });

  it('coalesces back-to-back task spans of one stage and microbatch into one span', () => {
    const spans = coalesce(small.trace.spans);
    // 4 stages x 8 microbatches, each one forward and one backward span.
    expect(spans.filter((s) => s.phase === 'F')).toHaveLength(32);
    expect(spans.filter((s) => s.phase === 'B')).toHaveLength(32);
  });

  it('a Chrome trace has one complete event per span, on a thread per worker', () => {
    const events = (toChromeTrace(small.trace) as { traceEvents: { ph: string; tid: number }[] }).traceEvents;
    const complete = events.filter((e) => e.ph === 'X');
    expect(complete.length).toBe(coalesce(small.trace.spans).length);
    expect(new Set(complete.map((e) => e.tid)).size).toBe(4);
  });

  it('an SVG timeline draws a lane per worker, also for 134k spans (no spread of huge arrays)', () => {
    const svg = timelineSvg(small.trace, { title: '1F1B <p=4>' });
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('1F1B &lt;p=4&gt;');
    const big = simulatePipeline({
      schedule: '1f1b',
      workers: 64,
      microbatches: 1024,
      costs: { forward: 1, backward: 2 },
    });
    expect(big.trace.spans.length).toBeGreaterThan(120_000);
    expect(timelineSvg(big.trace)).toMatch(/<\/svg>$/);
  });
});
