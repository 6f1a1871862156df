// `backflow simulate --search`: which schedule, microbatches and chunks for a model on p workers under
// a memory limit, every candidate simulated (Note [search costs], src/sim/search.ts).
import { SCHEDULE_KINDS } from '../schedule/config.ts';
import { formatSearch, type ModelCosts, searchSchedule } from '../sim/search.ts';
import { formatBytes } from '../util/bytes.ts';
import { int, num, type Spec, UsageError, type Values } from './main.ts';
import {
  byteSize,
  choiceList,
  computeFlags,
  describeTransport,
  intList,
  linkFlags,
  pipelineWorkers,
  writeOutputs,
} from './pipeline-flags.ts';

export const SEARCH: Spec = {
  search: {
    type: 'boolean',
    default: false,
    help: 'try every --schedules x --microbatches x --chunks and rank them by step time',
  },
  schedules: {
    type: 'string',
    help: `with --search: the schedules to try, comma-separated (default all: ${SCHEDULE_KINDS.join(',')})`,
  },
  'memory-limit': {
    type: 'string',
    help: 'with --search: bytes a worker may keep for backwards, e.g. 2GiB (needs --kept-bytes)',
  },
  'kept-bytes': {
    type: 'string',
    help: "with --search: bytes the model keeps for its backward over the step's batch, all stages together",
  },
  overhead: { type: 'string', help: 'with --search: a fixed cost of every task (ms; default 0)' },
};

const DEFAULT_MICROBATCHES = [4, 8, 16, 32];
const DEFAULT_CHUNKS = [1, 2];

export async function search(v: Values): Promise<void> {
  if (v['csv'] !== undefined) throw new UsageError('--search generates its candidates: drop --csv');
  if (v['schedule'] !== undefined && v['schedules'] !== undefined)
    throw new UsageError('--search tries --schedules (a list): drop --schedule');
  const workers = pipelineWorkers(v, 4);
  const link = linkFlags(v);
  const costs: ModelCosts = {
    ...computeFlags(v),
    ...link,
    ...(v['overhead'] !== undefined ? { overheadMs: num(v, 'overhead') } : {}),
    ...(v['kept-bytes'] !== undefined ? { keptBytes: byteSize(v, 'kept-bytes') } : {}),
    ...(v['activation-bytes'] !== undefined ? { activationBytes: byteSize(v, 'activation-bytes') } : {}),
  };
  const memoryLimit = v['memory-limit'] === undefined ? undefined : byteSize(v, 'memory-limit');
  if (memoryLimit !== undefined && costs.keptBytes === undefined)
    throw new UsageError(
      "--memory-limit needs --kept-bytes: the bytes the model keeps for its backward over the step's batch",
    );
  const key = v['schedules'] !== undefined ? 'schedules' : v['schedule'] !== undefined ? 'schedule' : null;
  const result = searchSchedule({
    workers,
    costs,
    microbatches: intList(v, 'microbatches', DEFAULT_MICROBATCHES),
    chunks: intList(v, 'chunks', DEFAULT_CHUNKS),
    schedules: key === null ? SCHEDULE_KINDS : choiceList(v, key, SCHEDULE_KINDS),
    ...(memoryLimit !== undefined ? { memoryLimit } : {}),
    ...(v['cores'] !== undefined ? { cores: int(v, 'cores') } : {}),
  });
  const split =
    costs.input !== undefined || costs.weight !== undefined
      ? ` (split: I ${costs.input ?? costs.backward / 2} + W ${costs.weight ?? costs.backward - (costs.input ?? costs.backward / 2)})`
      : '';
  const kept =
    costs.keptBytes === undefined ? 'kept bytes not given' : `${formatBytes(costs.keptBytes)} kept`;
  const crossing =
    costs.activationBytes === undefined
      ? '64 B per microbatch crossing each stage boundary'
      : `${formatBytes(costs.activationBytes)} crossing each stage boundary`;
  console.log(`search: p=${workers} workers, ${result.ranked.length + result.skipped.length} candidates`);
  console.log(
    `  the whole model on the step's batch: forward ${costs.forward} ms, backward ${costs.backward} ms${split}, ` +
      `${costs.overheadMs ?? 0} ms more per task; ${kept} for backwards, ${crossing}`,
  );
  console.log(`  transport ${describeTransport(link)}\n`);
  console.log(formatSearch(result));
  const best = result.best;
  if (best !== null && result.bestTrace !== null)
    writeOutputs(
      v,
      result.bestTrace,
      `${best.schedule}, p=${workers}, m=${best.microbatches}, chunks=${best.chunks}: the search's best (simulated)`,
    );
}
