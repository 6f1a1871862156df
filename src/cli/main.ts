// The `backflow` command line: train, simulate, inspect.
import { statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Dataset } from '../data/dataset.ts';
import { loadMnist } from '../data/mnist.ts';
import { spirals } from '../data/synthetic.ts';
import { BackflowError } from '../errors.ts';
import { OPTIMIZERS } from '../optim/spec.ts';
import { PLACEMENT_STRATEGIES, type PlacementStrategy } from '../partition/placement.ts';
import { PARAM_PLACEMENTS, type ParamPlacement } from '../partition/plan.ts';
import { SCHEDULE_KINDS } from '../schedule/config.ts';
import { kernelsInUse } from '../tensor/default-kernels.ts';
import { toChromeTrace } from '../trace/chrome.ts';
import { hasCheckpoint } from '../train/checkpoint.ts';
import { trainingSummary, workerBytesLines } from '../train/summary.ts';
import { Trainer } from '../train/trainer.ts';
import { MODELS } from './models.ts';
import { clusterOption, NATS_FLAGS, NODE, node } from './node-command.ts';
import { STOP_SIGNALS, stoppable } from './signals.ts';
import { INSPECT, inspect, SIMULATE, simulate } from './simulate-command.ts';

/** A usage error: what was wrong and what is valid. Exits with code 2. */
export class UsageError extends BackflowError {}

export type Spec = Record<
  string,
  {
    type: 'string' | 'boolean';
    short?: string;
    default?: string | boolean;
    /** The flag may be given more than once (its value is then a list). */
    multiple?: boolean;
    /** What the help calls the flag's value (default 'value'). */
    value?: string;
    help: string;
  }
>;

const COMMON: Spec = { help: { type: 'boolean', short: 'h', help: 'show this help' } };

const TRAIN: Spec = {
  data: { type: 'string', default: 'mnist', help: 'mnist | spirals' },
  workers: { type: 'string', default: '2', help: 'worker threads' },
  replicas: { type: 'string', help: 'data-parallel replicas (default: workers / stages)' },
  stages: { type: 'string', default: '1', help: 'pipeline stages per replica' },
  schedule: { type: 'string', help: `pipeline schedule: ${SCHEDULE_KINDS.join(' | ')}` },
  chunks: { type: 'string', default: '1', help: 'model chunks per worker (interleaved schedules)' },
  placement: { type: 'string', help: `${PLACEMENT_STRATEGIES.join(' | ')} (default: stages)` },
  'param-placement': {
    type: 'string',
    default: 'sharded',
    help: `where parameters live with replicas: ${PARAM_PLACEMENTS.join(' | ')}`,
  },
  microbatches: { type: 'string', default: '1', help: 'microbatches per replica per step' },
  epochs: { type: 'string', help: 'passes over the training data (default: 5 for mnist, 40 for spirals)' },
  'batch-size': { type: 'string', default: '128', help: 'examples per step' },
  lr: { type: 'string', help: 'learning rate (default: 0.001 for mnist, 0.01 for spirals)' },
  optimizer: { type: 'string', default: 'adam', help: OPTIMIZERS.join(' | ') },
  'clip-norm': { type: 'string', help: 'clip the global gradient norm to this value' },
  seed: { type: 'string', default: '0', help: 'seed of the initial parameters and the data order' },
  'checkpoint-dir': { type: 'string', help: 'save a checkpoint there after every epoch' },
  resume: { type: 'boolean', default: false, help: 'continue from the checkpoint in --checkpoint-dir' },
  'max-restarts': { type: 'string', default: '0', help: 'restarts from the checkpoint when a worker fails' },
  'restart-window': { type: 'string', default: '600', help: 'seconds in which more restarts fail the run' },
  'loss-curve': { type: 'string', default: 'loss-curve.svg', help: 'where to write the loss curve (SVG)' },
  'in-process': { type: 'boolean', default: false, help: 'run every host in this thread (debugging)' },
  ...NATS_FLAGS,
  nats: {
    ...NATS_FLAGS.nats!,
    help: 'train on node processes (backflow node) found through this NATS server',
  },
  nodes: {
    type: 'string',
    default: '1',
    help: 'with --nats: how many nodes to wait for, or their names (a,b)',
  },
  'data-path': {
    type: 'string',
    default: 'tcp',
    help: 'with --nats: tcp (direct links) | nats (through the server)',
  },
  trace: { type: 'string', help: 'write a Chrome trace (Perfetto) of the last step to this file' },
  ops: {
    type: 'string',
    multiple: true,
    value: 'module',
    help: 'a module that defines ops (defineOp) for every worker to import; repeatable or comma-separated',
  },
};

const COMMANDS: Record<string, { spec: Spec; summary: string; run: (v: Values) => Promise<unknown> }> = {
  train: { spec: TRAIN, summary: 'train an MLP on MNIST or spirals across worker threads', run: train },
  node: { spec: NODE, summary: 'offer hosts to a coordinator on other machines, through NATS', run: node },
  simulate: {
    spec: SIMULATE,
    summary: 'simulate a pipeline schedule: step time, bubble, memory',
    run: simulate,
  },
  inspect: { spec: INSPECT, summary: 'print a graph, a plan or a schedule grid', run: inspect },
};

export type Values = Record<string, string | string[] | boolean | undefined>;

function usage(name?: string): string {
  if (name === undefined || COMMANDS[name] === undefined) {
    const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(9)} ${c.summary}`);
    return `usage: backflow <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nbackflow <command> --help for its options`;
  }
  const spec = { ...COMMANDS[name]!.spec, ...COMMON };
  const lines = Object.entries(spec).map(([flag, o]) => {
    const left = `  --${flag}${o.type === 'string' ? ` <${o.value ?? 'value'}>` : ''}`;
    return `${left.padEnd(28)} ${o.help}${o.default !== undefined && o.type === 'string' ? ` (default ${o.default})` : ''}`;
  });
  return `usage: backflow ${name} [options]\n\n${lines.join('\n')}`;
}

export function int(v: Values, key: string, min = 1): number {
  const raw = v[key];
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(n) || n < min)
    throw new UsageError(`--${key}: expected an integer >= ${min}, found '${String(raw)}'`);
  return n;
}

export function num(v: Values, key: string, positive = false): number {
  const raw = v[key];
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isFinite(n) || (positive && !(n > 0)) || n < 0) {
    throw new UsageError(
      `--${key}: expected a ${positive ? 'positive' : 'non-negative'} number, found '${String(raw)}'`,
    );
  }
  return n;
}

/** A repeatable flag whose values may also be comma-separated lists; no entry may be empty. */
export function list(v: Values, key: string): string[] {
  const raw = v[key];
  if (raw === undefined) return [];
  const given = Array.isArray(raw) ? raw : [String(raw)];
  const items = given.flatMap((s) => s.split(',').map((item) => item.trim()));
  if (items.some((item) => item === '')) {
    throw new UsageError(
      `--${key}: expected module paths, file: URLs or package names, separated by commas, found ${given.map((s) => `'${s}'`).join(', ')}`,
    );
  }
  return items;
}

export function choice<T extends string>(v: Values, key: string, choices: readonly T[]): T {
  const raw = v[key];
  if (typeof raw !== 'string' || !(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`--${key}: expected one of ${choices.join(', ')}, found '${String(raw)}'`);
  }
  return raw as T;
}

/**
 * A file the command writes once it is done, checked before it starts: a directory, or a file in a
 * directory that does not exist, would only fail after the whole run.
 */
function outputFile(v: Values, key: string): string | undefined {
  const path = v[key];
  if (typeof path !== 'string') return undefined;
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory())
    throw new UsageError(`--${key}: expected a file to write, found the directory '${path}'`);
  if (!statSync(dirname(resolve(path)), { throwIfNoEntry: false })?.isDirectory())
    throw new UsageError(
      `--${key}: expected a file to write, found '${path}', whose directory does not exist`,
    );
  return path;
}

async function train(flags: Values): Promise<number | undefined> {
  const data = choice(flags, 'data', ['mnist', 'spirals'] as const);
  const model = MODELS[data];
  // The data set's epochs and rate where the flags do not give them.
  const v: Values = { epochs: model.epochs, lr: model.lr, ...flags };
  const trace = outputFile(v, 'trace');
  const curve = outputFile(v, 'loss-curve')!;
  const workers = int(v, 'workers');
  const stages = int(v, 'stages');
  const chunks = int(v, 'chunks');
  const replicas =
    v['replicas'] === undefined ? Math.max(1, Math.floor(workers / stages)) : int(v, 'replicas');
  const microbatches = int(v, 'microbatches');
  const schedule = v['schedule'] === undefined ? undefined : choice(v, 'schedule', SCHEDULE_KINDS);
  const ops = list(v, 'ops');
  const maxRestarts = int(v, 'max-restarts', 0);
  const restartWindow = num(v, 'restart-window', true);
  const dir = typeof v['checkpoint-dir'] === 'string' ? v['checkpoint-dir'] : undefined;
  const placement =
    v['placement'] === undefined
      ? undefined
      : choice<PlacementStrategy>(v, 'placement', PLACEMENT_STRATEGIES);
  const set =
    data === 'mnist'
      ? loadMnist({ train: 8000, test: 2000, seed: int(v, 'seed', 0) })
      : (() => {
          const tr = spirals({ perClass: 512, noise: 0.05, seed: int(v, 'seed', 0) + 1 });
          const te = spirals({ perClass: 256, noise: 0.05, seed: int(v, 'seed', 0) + 2 });
          return { train: new Dataset(tr.x, tr.y), test: new Dataset(te.x, te.y) };
        })();
  const graph = model.graph();
  const trainer = new Trainer(graph, {
    workers,
    replicas,
    microbatches,
    chunks,
    ...(schedule !== undefined ? { schedule } : {}),
    ...(placement !== undefined ? { placement } : {}),
    ...(stages > 1 && schedule === undefined ? { stages, placement: placement ?? 'stages' } : {}),
    paramPlacement: choice<ParamPlacement>(v, 'param-placement', PARAM_PLACEMENTS),
    ...(v['nats'] !== undefined
      ? { cluster: clusterOption(v, String(v['nodes']), choice(v, 'data-path', ['tcp', 'nats'] as const)) }
      : { mode: v['in-process'] ? 'in-process' : 'threads' }),
    ...(trace !== undefined ? { trace: true } : {}),
    seed: int(v, 'seed', 0),
    optimizer: { name: choice(v, 'optimizer', OPTIMIZERS), lr: num(v, 'lr', true) },
    ...(v['clip-norm'] !== undefined ? { clipNorm: num(v, 'clip-norm', true) } : {}),
    ...(ops.length > 0 ? { ops } : {}),
    ...(maxRestarts > 0 ? { restarts: { max: maxRestarts, withinMs: restartWindow * 1000 } } : {}),
  });
  console.log(
    `backflow: MLP on ${data} (${set.train.size} train, ${set.test.size} test), ${workers} worker threads, ${replicas} replica(s) x ${stages} stage(s), ${microbatches} microbatch(es), kernels ${kernelsInUse()}`,
  );
  const started = performance.now();
  try {
    const { value: history, stoppedBy } = await stoppable(
      `stopping after the step in flight${dir !== undefined ? `, then saving a checkpoint in ${dir}` : ''}`,
      (signal) =>
        trainer.fit(set.train, {
          epochs: int(v, 'epochs'),
          batchSize: int(v, 'batch-size'),
          evalData: set.test,
          signal,
          ...(dir !== undefined ? { checkpointDir: dir, resume: v['resume'] === true } : {}),
        }),
    );
    if (stoppedBy !== null) {
      const saved = dir !== undefined && (await hasCheckpoint(dir));
      console.log(
        `stopped by ${stoppedBy} after step ${trainer.steps}${saved ? `; --resume goes on from the checkpoint in ${dir}` : ''}`,
      );
      return STOP_SIGNALS[stoppedBy];
    }
    const seconds = (performance.now() - started) / 1000;
    const { samplesPerSec, accuracy } = trainingSummary(history);
    console.log(`\n${trainer.lossChart()}`);
    writeFileSync(curve, trainer.lossCurveSvg(`backflow: ${data} training loss`));
    console.log(`\ntest accuracy ${accuracy !== null ? `${(accuracy * 100).toFixed(2)}%` : 'n/a'}`);
    console.log(
      `${Math.round(samplesPerSec)} samples/s over ${history.steps.length} steps; ${seconds.toFixed(1)} s in all`,
    );
    for (const line of workerBytesLines(await (await trainer.start()).stats())) console.log(line);
    console.log(`loss curve written to ${curve}`);
    if (trace !== undefined && trainer.lastTrace !== null) {
      writeFileSync(trace, JSON.stringify(toChromeTrace(trainer.lastTrace)));
      console.log(`Chrome trace of the last step written to ${trace} (open it in Perfetto)`);
    }
  } finally {
    await trainer.close();
  }
}

/** Runs the command line; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(
      `backflow: unknown command '${name}' (expected one of ${Object.keys(COMMANDS).join(', ')})\n\n${usage()}`,
    );
    return 2;
  }
  const spec = { ...command.spec, ...COMMON };
  let values: Values;
  try {
    const options = Object.fromEntries(
      Object.entries(spec).map(([k, o]) => [
        k,
        {
          type: o.type,
          ...(o.short ? { short: o.short } : {}),
          ...(o.default !== undefined ? { default: o.default } : {}),
          ...(o.multiple ? { multiple: true } : {}),
        },
      ]),
    );
    values = parseArgs({ args: [...rest], options: options as never, strict: true, allowPositionals: false })
      .values as Values;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(
      `backflow ${name}: ${message}\nvalid options: ${Object.keys(spec)
        .map((k) => `--${k}`)
        .join(', ')}`,
    );
    return 2;
  }
  if (values['help']) {
    console.log(usage(name));
    return 0;
  }
  try {
    const code = await command.run(values);
    return typeof code === 'number' ? code : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`backflow ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof BackflowError) {
      console.error(`backflow ${name}: ${err.name}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (
  import.meta.url === `file://${process.argv[1]}` ||
  process.argv[1]?.endsWith('/cli/main.ts') ||
  process.argv[1]?.endsWith('/cli/main.js')
) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
