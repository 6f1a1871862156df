// A greedy shrinker over FuzzCase data: tries smaller cases (fewer steps, features off, simpler
// runtime options, narrower inputs) and keeps the first that still fails the same way, until none
// does or the budget is spent. Features still on at the end are the ones the failure needs.
import type { Feature, FuzzCase, RunConfig } from './case.ts';
import type { Outcome } from './run-case.ts';

/** What makes two failures the same: the kind, and for thrown errors the error's class. */
export function signature(outcome: Outcome): string {
  if (outcome.ok) return 'ok';
  const name = /^(\w+):/.exec(outcome.message)?.[1];
  return ['error', 'refused', 'reference'].includes(outcome.kind) && name
    ? `${outcome.kind}:${name}`
    : outcome.kind;
}

const withRun = (c: FuzzCase, run: Partial<RunConfig>): FuzzCase => ({ ...c, run: { ...c.run, ...run } });

function withoutKey<K extends keyof RunConfig>(c: FuzzCase, key: K): FuzzCase {
  const run = { ...c.run };
  delete run[key];
  return { ...c, run };
}

/** The case without a feature, and without the runtime options that feature switched on. */
function withoutFeature(c: FuzzCase, f: Feature): FuzzCase {
  const less = { ...c, features: c.features.filter((g) => g !== f) };
  if (f === 'optimizer') return withoutKey(less, 'optimizer');
  if (f === 'graphFile') return withoutKey(less, 'graphFile');
  if (f === 'schedules') return withoutKey(withoutKey(less, 'schedule'), 'chunks');
  if (f === 'scheduleAnyPlacement' && c.run.schedule !== undefined && c.run.placement !== 'manual')
    return withRun(less, { placement: 'stages' });
  return less;
}

const resized = (c: FuzzCase, size: number): FuzzCase => ({
  ...c,
  size,
  skip: c.skip.filter((i) => i < size),
});

/** Smaller variants of a case, the ones that remove most first. */
function* candidates(c: FuzzCase): Generator<FuzzCase> {
  const { run } = c;
  if (c.size > 1) yield resized(c, Math.floor(c.size / 2));
  for (const f of c.features) yield withoutFeature(c, f);
  if (run.schedule !== undefined) yield withoutKey(withoutKey(c, 'schedule'), 'chunks');
  if (run.optimizer !== undefined) yield withoutKey(c, 'optimizer');
  if (run.graphFile !== undefined) yield withoutKey(c, 'graphFile');
  if (run.steps > 1) yield withRun(c, { steps: 1 });
  if (run.replicas > 1) yield withRun(c, { replicas: 1, batch: Math.max(1, run.batch - run.microbatches) });
  if (run.microbatches > 1) yield withRun(c, { microbatches: run.microbatches - 1 });
  if (run.workers > 1) yield withRun(c, { workers: run.workers - 1 });
  if (run.batch > run.replicas * run.microbatches)
    yield withRun(c, { batch: run.replicas * run.microbatches });
  if (run.shuffleSeed !== undefined) yield withoutKey(c, 'shuffleSeed');
  if (run.paramPlacement !== 'sharded') yield withRun(c, { paramPlacement: 'sharded' });
  if (run.placement !== 'per-node' && run.placement !== 'stages') yield withRun(c, { placement: 'stages' });
  for (let i = 0; i < c.size; i++)
    if (!c.skip.includes(i)) yield { ...c, skip: [...c.skip, i].sort((a, b) => a - b) };
  if (c.width > 1) yield { ...c, width: c.width - 1 };
  if (c.size > 0) yield resized(c, c.size - 1);
}

export interface Shrunk {
  case: FuzzCase;
  outcome: Outcome;
  /** Cases run while shrinking. */
  runs: number;
}

export interface ShrinkBudget {
  /** The most cases to run. */
  runs: number;
  /** The most smaller cases to accept: each failing run can cost a step timeout. */
  steps: number;
}

/** Shrinks a failing case; `run` is the harness. */
export async function shrink(
  failing: FuzzCase,
  outcome: Outcome,
  run: (c: FuzzCase) => Promise<Outcome>,
  budget: ShrinkBudget,
): Promise<Shrunk> {
  const want = signature(outcome);
  let best: Shrunk = { case: failing, outcome, runs: 0 };
  let [runs, steps] = [0, 0];
  let improved = true;
  while (improved && runs < budget.runs && steps < budget.steps) {
    improved = false;
    for (const candidate of candidates(best.case)) {
      if (runs >= budget.runs) break;
      const out = await run(candidate);
      runs++;
      if (signature(out) === want) {
        best = { case: candidate, outcome: out, runs };
        steps++;
        improved = true;
        break;
      }
    }
  }
  return { ...best, runs };
}
