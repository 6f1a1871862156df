// The differential fuzzer in CI: random graphs (generate.ts) run on the runtime and on referenceStep
// with the same shards, compared bit for bit (run-case.ts). A failing case is shrunk, and the test
// prints its seed, features, runtime options and graph. Longer campaigns: npm run fuzz -- --help.
import { describe, expect, it } from 'vitest';
import { printGraph } from '../../src/graph/print.ts';
import { listOps } from '../../src/ops/registry.ts';
import { FEATURES, type Feature, type FuzzCase, type RunConfig } from './case.ts';
import { buildCase, randomCase } from './generate.ts';
import { REGRESSIONS } from './regressions.ts';
import { failureLine, shrunkReport } from './report.ts';
import { type HarnessOptions, runCase } from './run-case.ts';
import { shrink } from './shrink.ts';
import { STEPS } from './steps.ts';

/** Features every case may use: they pass on the current code. */
const PASSING: Feature[] = [
  'broadcast',
  'rank3',
  'batchAxis',
  'nonDiff',
  'paramFanOut',
  'tiedWeights',
  'secondInput',
  'userOps',
  'optimizer',
  'schedules',
];

/**
 * Features with known failures, each added to PASSING in a test of its own, which fails until its
 * fix lands; then the feature moves to PASSING.
 * - paramConstOnly: a node whose inputs are only parameters and constants never runs (step timeout);
 * - disconnectedParam: with an optimizer on the workers, a step with a parameter the loss does not
 *   read times out;
 * - wrtInputs: inputs in wrt hang (and the reference cannot sum a batched input's gradient over
 *   uneven shards);
 * - vStages: stage annotations that come back down hang under a pipeline schedule;
 * - frozenParam: with an optimizer on the workers, a parameter left out of wrt reports a norm, so the
 *   step finishes before the others do (global norm NaN).
 */
const PENDING: Feature[] = ['paramConstOnly', 'disconnectedParam', 'wrtInputs', 'vStages', 'frozenParam'];

// In-process steps of these graphs take milliseconds: a second is a hang.
const IN_PROCESS: HarnessOptions = { stepTimeoutMs: 1000 };
const THREADS: HarnessOptions = { stepTimeoutMs: 3000 };
// Each smaller case that still fails can cost a step timeout: a few, then the report.
const SHRINK = { runs: 60, steps: 8 };

/** Runs the cases in order; the first failure is shrunk and fails the test with its report. */
async function expectAllPass(cases: readonly FuzzCase[], options: HarnessOptions): Promise<void> {
  for (const c of cases) {
    const outcome = await runCase(c, options);
    if (outcome.ok) continue;
    const shrunk = await shrink(c, outcome, (s) => runCase(s, options), SHRINK);
    expect.fail(`${failureLine(c, outcome)}\n${shrunkReport(c, shrunk)}`);
  }
}

/** Cases from consecutive seeds (from `first`), keeping those that pass `keep`, until there are `count`. */
function cases(
  count: number,
  first: number,
  features: readonly Feature[],
  mode: RunConfig['mode'],
  keep: (c: FuzzCase) => boolean = () => true,
): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (let seed = first; out.length < count; seed++) {
    const c = randomCase(seed, { features, mode });
    if (keep(c)) out.push(c);
  }
  return out;
}

const uses = (feature: Feature) => (c: FuzzCase) => buildCase(c).used.includes(feature);

describe('the fuzz generator', () => {
  it('has a step for every registered op (built-in and the fixture user ops)', () => {
    const covered = new Set(STEPS.map((s) => s.op));
    expect(listOps().filter((op) => !covered.has(op))).toEqual([]);
  });

  it('draws every op and uses every feature over 300 cases with every feature on', () => {
    const drawn = new Set<string>();
    const used = new Set<Feature>();
    for (const c of cases(300, 0, FEATURES, 'in-process')) {
      const built = buildCase(c);
      for (const op of built.graph.nodes.map((n) => n.op)) drawn.add(op);
      for (const f of built.used) used.add(f);
    }
    expect(listOps().filter((op) => !drawn.has(op))).toEqual([]);
    expect(FEATURES.filter((f) => !used.has(f))).toEqual([]);
  });

  it('builds the same graph from the same case', () => {
    for (const c of cases(20, 0, FEATURES, 'in-process'))
      expect(printGraph(buildCase(c).graph)).toBe(printGraph(buildCase(c).graph));
  });
});

describe('the runtime against referenceStep, bit for bit', () => {
  it.each(REGRESSIONS.map((r) => [r.title, r] as const))('regression: %s', async (_, r) => {
    // A generator change that alters this graph would silently retire the regression.
    expect(printGraph(buildCase(r.case).graph)).toBe(r.graph.trim());
    await expectAllPass([r.case], r.case.run.mode === 'threads' ? THREADS : IN_PROCESS);
  });

  it('in-process, shuffled delivery: 240 cases with the passing features', async () => {
    await expectAllPass(cases(240, 1, PASSING, 'in-process'), IN_PROCESS);
  });

  it.each(PENDING)('in-process: 40 cases using %s', async (feature) => {
    await expectAllPass(cases(40, 1, [...PASSING, feature], 'in-process', uses(feature)), IN_PROCESS);
  });

  // About 0.5 s to start a runtime on threads: a handful of cases, chosen to cover both placements,
  // replicas, a schedule and an optimizer.
  const threadCases = (features: readonly Feature[], keep: (c: FuzzCase) => boolean = () => true) => [
    ...cases(
      1,
      1,
      features,
      'threads',
      (c) => keep(c) && c.run.placement === 'per-node' && c.run.replicas > 1,
    ),
    ...cases(
      1,
      1,
      features,
      'threads',
      (c) => keep(c) && c.run.schedule !== undefined && c.run.workers === 3,
    ),
    ...cases(1, 1, features, 'threads', (c) => keep(c) && c.run.optimizer !== undefined),
  ];

  it('threads: 3 cases with the passing features but user ops', async () => {
    await expectAllPass(threadCases(PASSING.filter((f) => f !== 'userOps')), THREADS);
  });

  it('threads: 2 cases using user ops (registered on the workers by the ops option)', async () => {
    await expectAllPass(threadCases(PASSING, uses('userOps')).slice(0, 2), THREADS);
  });
});
