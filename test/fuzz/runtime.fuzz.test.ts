// The differential fuzzer in CI: random graphs (generate.ts) run on the runtime and on referenceStep
// with the same shards, compared bit for bit (run-case.ts). A failing case is shrunk, and the test
// prints its seed, features, runtime options and graph. Longer campaigns: npm run fuzz -- --help.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import { checkGraph } from '../../src/graph/check.ts';
import { Graph } from '../../src/graph/graph.ts';
import { printGraph } from '../../src/graph/print.ts';
import { deserializeGraph, serializeGraph } from '../../src/graph/serialize.ts';
import { listOps } from '../../src/ops/registry.ts';
import { compile } from '../../src/partition/plan.ts';
import { simulate } from '../../src/sim/simulate.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { describeNats, natsUrl } from '../support/nats.ts';
import { spawnNode, stopAll } from '../support/node-processes.ts';
import { FEATURES, type Feature, type FuzzCase, type RunConfig } from './case.ts';
import { buildCase, randomCase, STEPS } from './generate.ts';
import { REGRESSIONS } from './regressions.ts';
import { failureLine, shrunkReport } from './report.ts';
import { type HarnessOptions, runCase, tensorDiff } from './run-case.ts';
import { type ShrinkBudget, shrink } from './shrink.ts';

/** Features every case may use: all of them (a feature with a known failure would wait here, off). */
const PASSING: Feature[] = [...FEATURES];

/**
 * Shapes that broke the runtime once, each run on cases that are sure to use it (random cases meet
 * some of them rarely): nodes fed only by parameters and constants, unconnected and frozen
 * parameters, inputs in wrt, V stage placement, stage annotations that come back down (refused under
 * a schedule), unannotated nodes, schedules over any placement (refused when values flow back), and
 * schedules with many microbatches, not a multiple of the workers.
 */
const TARGETED: Feature[] = [
  'paramConstOnly',
  'disconnectedParam',
  'wrtInputs',
  'vStages',
  'backStages',
  'frozenParam',
  'partialStages',
  'scheduleAnyPlacement',
  'manyMicrobatches',
];

// In-process steps of these graphs take milliseconds: a second is a hang.
const IN_PROCESS: HarnessOptions = { stepTimeoutMs: 1000 };
const THREADS: HarnessOptions = { stepTimeoutMs: 3000 };
// Each smaller case that still fails can cost a step timeout: a few, then the report.
const SHRINK: ShrinkBudget = { runs: 60, steps: 6 };
// On threads every run starts a runtime (~0.5 s).
const SHRINK_THREADS: ShrinkBudget = { runs: 10, steps: 4 };

/** Runs the cases in order; the first failure is shrunk and fails the test with its report. */
async function expectAllPass(
  cases: readonly FuzzCase[],
  options: HarnessOptions,
  budget: ShrinkBudget = SHRINK,
): Promise<void> {
  for (const c of cases) {
    const outcome = await runCase(c, options);
    if (outcome.ok) continue;
    const shrunk = await shrink(c, outcome, (s) => runCase(s, options), budget);
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

  it('draws every op and uses every feature over 300 cases with every feature on (and 20 on threads)', () => {
    const drawn = new Set<string>();
    const used = new Set<Feature>();
    for (const c of [...cases(300, 0, FEATURES, 'in-process'), ...cases(20, 0, FEATURES, 'threads')]) {
      const built = buildCase(c);
      for (const op of built.graph.nodes.map((n) => n.op)) drawn.add(op);
      for (const f of built.used) used.add(f);
    }
    expect(listOps().filter((op) => !drawn.has(op))).toEqual([]);
    expect(FEATURES.filter((f) => !used.has(f))).toEqual([]);
  });

  it('compares bits: -0 is not 0, NaN payloads differ, a missing gradient is named', () => {
    const t = (values: number[]) => tensor(values, { shape: [values.length] });
    const payload = t([Number.NaN]);
    new Uint32Array(payload.data.buffer)[0] = 0x7fc00001;
    expect(tensorDiff('g', t([1, 0]), t([1, 0]))).toBeNull();
    expect(tensorDiff('g', t([1, -0]), t([1, 0]))).toBe(
      'g differs at element 1: runtime 0 (0x80000000), reference 0 (0x00000000)',
    );
    expect(tensorDiff('g', t([Number.NaN]), payload)).toBe(
      'g differs at element 0: runtime NaN (0x7fc00000), reference NaN (0x7fc00001)',
    );
    expect(tensorDiff('g', undefined, t([1]))).toBe('g is missing');
  });

  it('builds graphs the engines read as they read the same nodes as objects: printed, and gradients bit for bit', () => {
    // The builder's graphs hold columns (Note [builder columns]); a graph of the same nodes as plain
    // objects is the representation they replace.
    for (const c of cases(60, 0, FEATURES, 'in-process')) {
      const built = buildCase(c);
      const { graph } = built;
      // Checked on its columns (Note [checks on columns]), before anything makes its node objects.
      expect(graph.madeAll).toBe(false);
      expect(checkGraph(graph)).toBe(graph);
      expect(graph.madeAll).toBe(false);
      const table = new Graph(
        graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs] })),
        graph.outputs,
      );
      expect(printGraph(table)).toBe(printGraph(graph));
      const feeds = built.feeds(0);
      const got = valueAndGrad(graph, { loss: 'loss', wrt: built.wrt, onWarning: () => {} })(
        feeds,
        built.params,
      );
      const want = valueAndGrad(table, { loss: 'loss', wrt: built.wrt, onWarning: () => {} })(
        feeds,
        built.params,
      );
      expect(tensorDiff('loss', got.value, want.value)).toBeNull();
      for (const name of built.wrt) expect(tensorDiff(name, got.grads[name], want.grads[name]!)).toBeNull();
    }
  });

  it('reads back every graph it serializes: printed, the same bytes again, and gradients bit for bit', () => {
    // Note [graph format]: the columns of format version 3, with every op, attribute and stage the
    // generator draws.
    for (const c of cases(60, 0, FEATURES, 'in-process')) {
      const built = buildCase(c);
      const { graph } = built;
      const bytes = serializeGraph(graph);
      const back = deserializeGraph(bytes);
      expect(back.madeAll).toBe(false);
      expect(printGraph(back)).toBe(printGraph(graph));
      expect(Buffer.compare(serializeGraph(back), bytes)).toBe(0);
      const feeds = built.feeds(0);
      const options = { loss: 'loss', wrt: built.wrt, onWarning: () => {} };
      const got = valueAndGrad(back, options)(feeds, built.params);
      const want = valueAndGrad(graph, options)(feeds, built.params);
      expect(tensorDiff('loss', got.value, want.value)).toBeNull();
      for (const name of built.wrt) expect(tensorDiff(name, got.grads[name], want.grads[name]!)).toBeNull();
    }
  });

  it('the simulator runs every generated plan to its end, with message chores or without: the same tasks and messages', () => {
    // Note [message chores]: a chore's cost moves when a message leaves or is taken, never whether.
    // Each case's own plan, and the same graph per node on 4 workers.
    for (const c of cases(80, 0, FEATURES, 'in-process', (k) => k.run.schedule === undefined)) {
      const built = buildCase(c);
      const { run } = c;
      const plans = [
        compile(built.graph, {
          workers: run.workers,
          replicas: run.replicas,
          placement: run.placement,
          paramPlacement: run.paramPlacement,
          wrt: built.wrt,
        }),
        compile(built.graph, { workers: 4, placement: 'per-node', wrt: built.wrt }),
      ];
      for (const plan of plans) {
        const cost = { task: (_: unknown, node: { id: number }) => (node.id % 7) + 1, message: () => 0.5 };
        const options = { microbatches: run.microbatches, batchSize: run.batch, record: false };
        const plain = simulate(plan, { ...options, cost });
        const chores = simulate(plan, {
          ...options,
          cost: { ...cost, send: () => 0.25, receive: () => 0.75 },
        });
        expect(chores.actions).toBe(plain.actions);
        expect(chores.messages).toBe(plain.messages);
      }
    }
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
    // Shrunk already.
    await expectAllPass([r.case], r.case.run.mode === 'threads' ? THREADS : IN_PROCESS, {
      runs: 0,
      steps: 0,
    });
  });

  it('in-process, shuffled delivery: 400 cases with the passing features', async () => {
    await expectAllPass(cases(400, 1, PASSING, 'in-process'), IN_PROCESS);
  });

  // Unannotated nodes matter only where stages are ordered: under a schedule.
  const alsoNeeds: Partial<Record<Feature, (c: FuzzCase) => boolean>> = {
    partialStages: (c) => c.run.schedule !== undefined,
    backStages: (c) => c.run.schedule !== undefined,
  };

  it.each(TARGETED)('in-process: 40 cases using %s', async (feature) => {
    const keep = (c: FuzzCase) => (alsoNeeds[feature]?.(c) ?? true) && uses(feature)(c);
    await expectAllPass(cases(40, 1, PASSING, 'in-process', keep), IN_PROCESS);
  });

  // About 0.5 s to start a runtime on threads: a few cases, each the first seed with per-node placement,
  // replicas and a wide stem (its parameters cross the links' rings: Note [tensor ring]), with a
  // schedule on 3 workers, with an optimizer.
  const wanted: ((c: FuzzCase) => boolean)[] = [
    (c) => c.run.placement === 'per-node' && c.run.replicas > 1 && c.width > 64,
    (c) => c.run.schedule !== undefined && c.run.workers === 3,
    (c) => c.run.optimizer !== undefined,
  ];
  const threadCases = (features: readonly Feature[], keep: (c: FuzzCase) => boolean = () => true) =>
    wanted.flatMap((want) => cases(1, 1, features, 'threads', (c) => keep(c) && want(c)));

  it('threads: 3 cases with the passing features but user ops', async () => {
    await expectAllPass(threadCases(PASSING.filter((f) => f !== 'userOps')), THREADS, SHRINK_THREADS);
  });

  it('threads: 2 cases using user ops (registered on the workers by the ops option)', async () => {
    await expectAllPass(threadCases(PASSING, uses('userOps')).slice(0, 2), THREADS, SHRINK_THREADS);
  });
});

describeNats('the runtime on node processes against referenceStep, bit for bit', () => {
  const cluster = `fuzz-${process.pid}`;
  beforeAll(async () => {
    await Promise.all(
      ['a', 'b', 'c'].map((name) => spawnNode({ nats: { servers: natsUrl()! }, cluster, name })),
    );
  }, 60_000);
  afterAll(() => stopAll());

  it('node processes over TCP and over NATS: 3 cases with the passing features', async () => {
    const c = cases(3, 1, PASSING, 'nats');
    for (const [i, data] of (['tcp', 'nats', 'tcp'] as const).entries())
      await expectAllPass(
        [c[i]!],
        { ...THREADS, cluster: { nats: natsUrl()!, name: cluster, nodes: 3, data } },
        SHRINK_THREADS,
      );
  }, 60_000);
});
