// How the fuzzer prints a failure: its seed, features and runtime options on one line, then the
// shrunk case in full (graph, error) and the entry to paste into regressions.ts.
import { printGraph } from '../../src/graph/print.ts';
import { describeRun, type Feature, type FuzzCase, runChanges } from './case.ts';
import { buildCase } from './generate.ts';
import type { Outcome } from './run-case.ts';
import type { Shrunk } from './shrink.ts';

type Failure = Extract<Outcome, { ok: false }>;

const firstLine = (s: string) => s.split('\n')[0]!;
const indent = (s: string, by = '    ') => s.replace(/^/gm, by);

/** The features a case's graph uses (empty if it cannot be built). */
export function usedFeatures(c: FuzzCase): Feature[] {
  try {
    return buildCase(c).used;
  } catch {
    return [];
  }
}

/** One line: seed, kind, features used, runtime options, and the first line of the error. */
export function failureLine(c: FuzzCase, outcome: Failure): string {
  return `FAIL seed ${c.seed} ${outcome.kind} [${usedFeatures(c).join(' ')}] (${describeRun(c.run)}): ${firstLine(outcome.message)}`;
}

/** The entry for regressions.ts that replays a shrunk case. */
export function regressionEntry(c: FuzzCase, title: string): string {
  const graph = printGraph(buildCase(c).graph);
  const { run, ...rest } = c;
  const fields = Object.entries(rest).map(([k, v]) => `${k}: ${JSON.stringify(v)}`);
  return [
    '  {',
    `    title: ${JSON.stringify(title)},`,
    `    case: { ${fields.join(', ')}, run: runWith(${JSON.stringify(runChanges(run))}) },`,
    `    graph: \`\n${graph}\`,`,
    '  },',
  ].join('\n');
}

/** A shrunk failure in full. */
export function shrunkReport(original: FuzzCase, shrunk: Shrunk): string {
  const c = shrunk.case;
  const outcome = shrunk.outcome as Failure;
  const built = buildCase(c);
  return [
    `seed ${original.seed}${shrunk.runs > 0 ? `, shrunk in ${shrunk.runs} runs` : ''}: ${c.size - c.skip.length} steps`,
    `  ${outcome.kind}: ${indent(outcome.message, '    ').trimStart()}`,
    `  features on: ${c.features.join(' ') || '-'}`,
    `  features used: ${built.used.join(' ') || '-'}`,
    `  runtime: ${describeRun(c.run)}`,
    `  wrt: ${built.wrt.join(' ')}`,
    indent(printGraph(built.graph)),
    `  replay: npm run fuzz -- --case '${JSON.stringify(c)}'`,
    '  regression entry (for test/fuzz/regressions.ts):',
    regressionEntry(c, `${outcome.kind}: ${firstLine(outcome.message).slice(0, 80)}`),
  ].join('\n');
}
