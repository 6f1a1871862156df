import { ScheduleError } from '../errors.ts';

/** The generated schedules, by the names users pick them with. */
export const SCHEDULE_KINDS = [
  'gpipe',
  '1f1b',
  'interleaved-1f1b',
  'zb-h1',
  'interleaved-zb',
  'looped-bfs',
  'zb-v',
  'dualpipe-v',
] as const;
/** A generated schedule's name. */
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

/** The size of a pipeline a schedule is generated for: p workers, m microbatches, v chunks per worker. */
export interface PipelineConfig {
  /** p: pipeline workers. */
  readonly workers: number;
  /** m: microbatches per step. */
  readonly microbatches: number;
  /**
   * v: model chunks per worker (default 1; 2 for the V schedules, which need exactly 2). The model
   * has workers * chunks stages, placed on the workers by the generator's stage placement (Note
   * [stage placement]).
   */
  readonly chunks?: number;
}

/** A configuration that passed its schedule's rules. */
export interface CheckedConfig {
  readonly kind: ScheduleKind;
  readonly workers: number;
  readonly microbatches: number;
  readonly chunks: number;
  readonly stages: number;
}

const NAMES: Record<ScheduleKind, string> = {
  gpipe: 'GPipe',
  '1f1b': '1F1B',
  'interleaved-1f1b': 'interleaved 1F1B',
  'zb-h1': 'ZB-H1',
  'interleaved-zb': 'interleaved zero bubble',
  'looped-bfs': 'looped BFS',
  'zb-v': 'ZB-V',
  'dualpipe-v': 'DualPipeV',
};

/** How many model chunks a worker holds: one, any number (looping placement), or two (a V). */
const CHUNKS: Record<ScheduleKind, 'one' | 'any' | 'two'> = {
  gpipe: 'one',
  '1f1b': 'one',
  'interleaved-1f1b': 'any',
  'zb-h1': 'one',
  'interleaved-zb': 'any',
  'looped-bfs': 'any',
  'zb-v': 'two',
  'dualpipe-v': 'two',
};

/**
 * Note [interleaved rounds]: interleaved schedules walk the microbatches in rounds, each round
 * running its microbatches through one chunk before moving to the next. Megatron-LM's rounds are p
 * microbatches, so m must be a multiple of p; PyTorch relaxes that to rounds = max(1, floor(m / p))
 * of m / rounds microbatches each, so m must be a multiple of the rounds (p = 4: m = 3, 6 or 10 are
 * fine, 9 is not). We take PyTorch's rule and its order; with m a multiple of p both are the same.
 */
export function interleavedRounds(workers: number, microbatches: number): number {
  return Math.max(1, Math.floor(microbatches / workers));
}

/**
 * The configuration rules, checked before anything runs. Each error names the rule, the values
 * found, and what to use instead.
 *   - workers, microbatches and chunks are integers >= 1;
 *   - GPipe, 1F1B and ZB-H1 place one stage per worker (chunks = 1); ZB-V and DualPipeV two, in a V
 *     (chunks = 2, the default for them); the interleaved schedules and looped BFS any number;
 *   - 1F1B and ZB-H1 need microbatches >= stages (m >= p), so that the steady one-forward-one-backward
 *     phase exists on every worker; so do the interleaved schedules with chunks = 1, which are them;
 *   - interleaved 1F1B and interleaved zero bubble with chunks > 1 need microbatches to be a multiple
 *     of their rounds (Note [interleaved rounds]);
 *   - DualPipeV needs microbatches >= stages (m >= 2p), as PyTorch's does: its steady phase pairs a
 *     forward of one chunk with a backward of the other;
 *   - GPipe, looped BFS and ZB-V take any microbatch count.
 */
export function checkPipelineConfig(kind: ScheduleKind, config: PipelineConfig): CheckedConfig {
  if (!(SCHEDULE_KINDS as readonly string[]).includes(kind))
    throw new ScheduleError(
      `unknown schedule ${JSON.stringify(kind)}: expected one of ${SCHEDULE_KINDS.join(', ')}`,
      { rule: 'schedule kind', expected: SCHEDULE_KINDS, found: kind },
    );
  const name = NAMES[kind];
  const { workers, microbatches, chunks = CHUNKS[kind] === 'two' ? 2 : 1 } = config;
  for (const [field, value] of [
    ['workers', workers],
    ['microbatches', microbatches],
    ['chunks', chunks],
  ] as const)
    if (!Number.isSafeInteger(value) || value < 1)
      throw new ScheduleError(`${name}: ${field} must be an integer >= 1, found ${value}`, {
        rule: `${field} >= 1`,
        [field]: value,
        expected: 'an integer >= 1',
        found: value,
      });

  if (CHUNKS[kind] === 'one' && chunks !== 1)
    throw new ScheduleError(
      `${name} places one stage per worker (chunks = 1), found chunks = ${chunks}; ` +
        `use 'interleaved-1f1b' or 'interleaved-zb' for several model chunks per worker`,
      { rule: 'chunks = 1', chunks, expected: 1, found: chunks },
    );
  if (CHUNKS[kind] === 'two' && chunks !== 2)
    throw new ScheduleError(
      `${name} places two stages per worker in a V (chunks = 2), found chunks = ${chunks}; ` +
        `use 'interleaved-zb' or 'looped-bfs' for another number of model chunks per worker`,
      { rule: 'chunks = 2', chunks, expected: 2, found: chunks },
    );

  const stages = workers * chunks;
  const interleaved = kind === 'interleaved-1f1b' || kind === 'interleaved-zb';
  const oneFOneB = kind === '1f1b' || kind === 'zb-h1' || (interleaved && chunks === 1);
  if ((oneFOneB || kind === 'dualpipe-v') && microbatches < stages) {
    const other = kind === 'dualpipe-v' ? "'zb-v'" : "'gpipe'";
    throw new ScheduleError(
      `${name} needs microbatches >= stages (${kind === 'dualpipe-v' ? 'm >= 2p' : 'm >= p'}): found ` +
        `microbatches = ${microbatches}, stages = ${stages}; use at least ${stages} microbatches, or ` +
        `${other}, which accepts any count`,
      { rule: 'microbatches >= stages', microbatches, stages, expected: `>= ${stages}`, found: microbatches },
    );
  }
  const rounds = interleavedRounds(workers, microbatches);
  if (interleaved && chunks > 1 && microbatches % rounds !== 0) {
    const fits = (m: number) => m % interleavedRounds(workers, m) === 0;
    let [below, above] = [microbatches - 1, microbatches + 1];
    while (!fits(below)) below--;
    while (!fits(above)) above++;
    throw new ScheduleError(
      `${name} needs microbatches to be a multiple of its rounds, max(1, floor(m / p)) = ${rounds} ` +
        `(Note [interleaved rounds]): found microbatches = ${microbatches}, workers = ${workers}; ` +
        `use ${below} or ${above} microbatches, or chunks = 1`,
      {
        rule: 'microbatches % rounds == 0',
        microbatches,
        workers,
        expected: `a multiple of ${rounds}`,
        found: microbatches,
      },
    );
  }
  return { kind, workers, microbatches, chunks, stages };
}
