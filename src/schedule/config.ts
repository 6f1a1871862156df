import { ScheduleError } from '../errors.ts';

/** The generated schedules, by the names users pick them with. */
export const SCHEDULE_KINDS = ['gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1'] as const;
/** The generated schedules' names: 'gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1'. */
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

/** The size of a pipeline a schedule is generated for: p workers, m microbatches, v chunks per worker. */
export interface PipelineConfig {
  /** p: pipeline workers. */
  readonly workers: number;
  /** m: microbatches per step. */
  readonly microbatches: number;
  /**
   * v: model chunks per worker, for interleaved 1F1B (default 1). The model has workers * chunks
   * stages, placed on the workers by the generator's stage placement (Note [stage placement]).
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
};

/**
 * The configuration rules, checked before anything runs. Each error names the rule, the values
 * found, and what to use instead.
 *   - workers, microbatches and chunks are integers >= 1;
 *   - GPipe, 1F1B and ZB-H1 place one stage per worker (chunks = 1);
 *   - 1F1B and ZB-H1 need microbatches >= stages (m >= p), so that the steady one-forward-one-backward
 *     phase exists on every worker;
 *   - interleaved 1F1B with chunks > 1 needs microbatches to be a multiple of workers (m % p == 0),
 *     because its order walks the microbatches in rounds of p per chunk (Megatron-LM's rule). With
 *     chunks = 1 it is 1F1B, with 1F1B's rule.
 */
export function checkPipelineConfig(kind: ScheduleKind, config: PipelineConfig): CheckedConfig {
  if (!(SCHEDULE_KINDS as readonly string[]).includes(kind))
    throw new ScheduleError(
      `unknown schedule ${JSON.stringify(kind)}: expected one of ${SCHEDULE_KINDS.join(', ')}`,
      { rule: 'schedule kind', expected: SCHEDULE_KINDS, found: kind },
    );
  const name = NAMES[kind];
  const { workers, microbatches, chunks = 1 } = config;
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

  if (kind !== 'interleaved-1f1b' && chunks !== 1)
    throw new ScheduleError(
      `${name} places one stage per worker (chunks = 1), found chunks = ${chunks}; ` +
        `use 'interleaved-1f1b' for several model chunks per worker`,
      { rule: 'chunks = 1', chunks, expected: 1, found: chunks },
    );

  const stages = workers * chunks;
  const oneFOneB = kind === '1f1b' || kind === 'zb-h1' || (kind === 'interleaved-1f1b' && chunks === 1);
  if (oneFOneB && microbatches < stages)
    throw new ScheduleError(
      `${name} needs microbatches >= stages (m >= p): found microbatches = ${microbatches}, ` +
        `stages = ${stages}; use at least ${stages} microbatches, or 'gpipe', which accepts any count`,
      { rule: 'microbatches >= stages', microbatches, stages, expected: `>= ${stages}`, found: microbatches },
    );
  if (kind === 'interleaved-1f1b' && chunks > 1 && microbatches % workers !== 0) {
    const below = Math.floor(microbatches / workers) * workers;
    const above = below + workers;
    const instead = below > 0 ? `${below} or ${above}` : `${above}`;
    throw new ScheduleError(
      `${name} needs microbatches to be a multiple of workers (m % p == 0): found microbatches = ` +
        `${microbatches}, workers = ${workers}; use ${instead} microbatches, or chunks = 1 (plain 1F1B)`,
      {
        rule: 'microbatches % workers == 0',
        microbatches,
        workers,
        expected: `a multiple of ${workers}`,
        found: microbatches,
      },
    );
  }
  return { kind, workers, microbatches, chunks, stages };
}
