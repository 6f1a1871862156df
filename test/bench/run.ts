/**
 * `npm run bench -- <suite> [<suite>...] [--json] [--runs N] [--<suite flag>...]`
 *
 * Runs the named suites in order, with a `machine` line before each and after the last: a compute
 * probe that says how steady the machine was meanwhile (machine.ts). Without a suite name (or with
 * --help) it lists the suites.
 * Exit code 2 for a usage error (unknown suite or flag), 1 when a suite throws.
 */
import {
  type BenchResult,
  createContext,
  formatJson,
  formatTable,
  type Suite,
  tableHeader,
} from './harness.ts';
import { machineProbe } from './machine.ts';
import { actorsSuite } from './suites/actors.ts';
import { clusterSuite } from './suites/cluster.ts';
import { graphSuite } from './suites/graph.ts';
import { matmulSuite } from './suites/matmul.ts';
import { modelsSuite } from './suites/models.ts';
import { pipelineSuite } from './suites/pipeline.ts';
import { poolSuite } from './suites/pool.ts';
import { simSuite } from './suites/sim.ts';
import { trainSuite } from './suites/train.ts';

// The registry: add a suite by importing it above and listing it here.
const SUITES: readonly Suite[] = [
  matmulSuite,
  graphSuite,
  simSuite,
  actorsSuite,
  pipelineSuite,
  trainSuite,
  modelsSuite,
  poolSuite,
  clusterSuite,
];

interface Args {
  names: string[];
  json: boolean;
  runs?: number;
  flags: Set<string>;
  help: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { names: [], json: false, flags: new Set(), help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') args.help = true;
    else if (arg === '--json') args.json = true;
    else if (arg === '--runs') {
      const runs = Number(argv[++i]);
      if (!Number.isInteger(runs) || runs < 1)
        throw new UsageError(`--runs expects a positive integer, found ${argv[i]}`);
      args.runs = runs;
    } else if (arg.startsWith('--')) args.flags.add(arg.slice(2));
    else args.names.push(arg);
  }
  return args;
}

function usage(): string {
  const width = Math.max(...SUITES.map((s) => s.name.length));
  const lines = ['usage: npm run bench -- <suite> [<suite>...] [--json] [--runs N]', '', 'suites:'];
  for (const suite of SUITES) {
    lines.push(`  ${suite.name.padEnd(width)}  ${suite.description}`);
    for (const [flag, text] of Object.entries(suite.flags ?? {}))
      lines.push(`  ${''.padEnd(width)}    --${flag}: ${text}`);
  }
  return lines.join('\n');
}

/** The suites named, in order; every name and flag is checked before anything runs. */
function select(args: Args): Suite[] {
  const byName = new Map(SUITES.map((s) => [s.name, s]));
  const unknown = args.names.filter((n) => !byName.has(n));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown suite ${unknown.join(', ')}; valid suites: ${SUITES.map((s) => s.name).join(', ')}`,
    );
  }
  const suites = args.names.map((n) => byName.get(n)!);
  const known = new Set(suites.flatMap((s) => Object.keys(s.flags ?? {})));
  const badFlags = [...args.flags].filter((f) => !known.has(f));
  if (badFlags.length > 0) {
    throw new UsageError(
      `unknown flag ${badFlags.map((f) => `--${f}`).join(', ')} for suite(s) ${args.names.join(', ')}`,
    );
  }
  const fixed = suites.filter((s) => !s.takesRuns);
  if (args.runs !== undefined && fixed.length > 0) {
    throw new UsageError(
      `--runs applies to ${SUITES.filter((s) => s.takesRuns)
        .map((s) => s.name)
        .join(', ')} only, not to ${fixed.map((s) => s.name).join(', ')} (their runs are set per case)`,
    );
  }
  return suites;
}

async function main(argv: readonly string[]): Promise<number> {
  let args: Args;
  let suites: Suite[];
  try {
    args = parseArgs(argv);
    if (args.help || args.names.length === 0) {
      console.log(usage());
      return 0;
    }
    suites = select(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bench: ${error.message}`);
    return 2;
  }
  const emit = (result: BenchResult) => console.log(args.json ? formatJson(result) : formatTable(result));
  if (!args.json) console.log(tableHeader());
  // How steady the machine was around each suite (machine.ts).
  for (const suite of suites) {
    emit(machineProbe(`before ${suite.name}`));
    await suite.run(createContext({ suite: suite.name, flags: args.flags, runs: args.runs, emit }));
  }
  emit(machineProbe('after the last suite'));
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
