// A longer fuzz campaign than CI runs (npm run fuzz -- --help): one line per failing case, a summary
// of failures by kind and by generator feature, then each kind of failure shrunk and printed.
import { parseArgs } from 'node:util';
import { configureCallPool } from '../../src/autodiff/call-pool.ts';
import { FEATURES, type Feature, type FuzzCase } from './case.ts';
import { randomCase } from './generate.ts';
import { failureLine, shrunkReport, usedFeatures } from './report.ts';
import { type Outcome, runCase } from './run-case.ts';
import { shrink, signature } from './shrink.ts';

const HELP = `npm run fuzz -- [options]
  --runs N          cases to run (default 200)
  --seed S          seed of the first case; case k has seed S + k (default 1)
  --threads         run on worker threads (default: in-process, shuffled delivery)
  --features a,b    the generator features to switch on (default: all)
  --without a,b     features to switch off
  --timeout MS      step timeout (default 1000 in-process, 3000 threads)
  --max-size N      most steps per graph (default 10)
  --shrink-runs N   most cases to run while shrinking each kind of failure (default 300; 0: no shrinking)
  --case JSON       replay (and shrink) one case, as a failure report prints it
  --repeat K        run each case up to K times, failing if any run fails (for failures that come and go)
features: ${FEATURES.join(', ')}`;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    threads: { type: 'boolean', default: false },
    features: { type: 'string' },
    without: { type: 'string', default: '' },
    timeout: { type: 'string' },
    'max-size': { type: 'string', default: '10' },
    'shrink-runs': { type: 'string', default: '300' },
    case: { type: 'string' },
    repeat: { type: 'string', default: '1' },
    help: { type: 'boolean', default: false },
  },
});
// As the test suite runs the reference: a storage its calls take back reads NaN (Note [call storages]).
configureCallPool({ poison: true });
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

const list = (s: string | undefined): Feature[] => {
  const names = (s ?? '').split(',').filter(Boolean);
  const unknown = names.filter((f) => !(FEATURES as string[]).includes(f));
  if (unknown.length > 0) throw new Error(`unknown features: ${unknown.join(', ')}\n\n${HELP}`);
  return names as Feature[];
};
const replay = values.case === undefined ? null : (JSON.parse(values.case) as FuzzCase);
const mode = replay?.run.mode ?? (values.threads ? 'threads' : 'in-process');
const without = list(values.without);
const features = (values.features === undefined ? FEATURES : list(values.features)).filter(
  (f) => !without.includes(f),
);
const stepTimeoutMs = Number(values.timeout ?? (mode === 'threads' ? 3000 : 1000));
const repeat = Number(values.repeat);
async function run(c: FuzzCase): Promise<Outcome> {
  let outcome: Outcome = { ok: true };
  for (let k = 0; k < repeat && outcome.ok; k++) outcome = await runCase(c, { stepTimeoutMs });
  return outcome;
}

const cases: FuzzCase[] = replay
  ? [replay]
  : Array.from({ length: Number(values.runs) }, (_, k) =>
      randomCase(Number(values.seed) + k, { features, mode, maxSize: Number(values['max-size']) }),
    );

console.log(`${cases.length} ${mode} cases, features: ${features.join(' ')}`);
const started = performance.now();
const failures: { c: FuzzCase; outcome: Extract<Outcome, { ok: false }> }[] = [];
const perFeature = new Map<Feature, { cases: number; failing: number }>(
  FEATURES.map((f) => [f, { cases: 0, failing: 0 }]),
);
for (const c of cases) {
  const outcome = await run(c);
  const used = usedFeatures(c);
  for (const f of used) perFeature.get(f)!.cases++;
  if (outcome.ok) continue;
  for (const f of used) perFeature.get(f)!.failing++;
  failures.push({ c, outcome });
  console.log(failureLine(c, outcome));
}
const seconds = (performance.now() - started) / 1000;

const bySignature = new Map<string, typeof failures>();
for (const f of failures)
  bySignature.set(signature(f.outcome), [...(bySignature.get(signature(f.outcome)) ?? []), f]);
console.log(
  `\n${cases.length} cases in ${seconds.toFixed(1)} s (${((seconds * 1000) / cases.length).toFixed(1)} ms a case): ` +
    `${cases.length - failures.length} passed, ${failures.length} failed`,
);
for (const [sig, fs] of bySignature) console.log(`  ${sig}: ${fs.length} (first: seed ${fs[0]!.c.seed})`);
console.log('\nfeature                cases  failing');
for (const [f, n] of perFeature)
  console.log(`  ${f.padEnd(20)} ${String(n.cases).padStart(5)}  ${String(n.failing).padStart(7)}`);

const shrinkRuns = Number(values['shrink-runs']);
if (shrinkRuns > 0) {
  for (const [sig, fs] of bySignature) {
    const first = fs[0]!;
    console.log(`\n== ${sig}: the first case shrunk`);
    const shrunk = await shrink(first.c, first.outcome, run, { runs: shrinkRuns, steps: shrinkRuns });
    console.log(shrunkReport(first.c, shrunk));
  }
}
process.exitCode = failures.length > 0 ? 1 : 0;
