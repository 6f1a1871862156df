import { ScheduleError } from '../errors.ts';
import { actionsOf, isCommunication, type Schedule } from './action.ts';

/**
 * Where the stages of one replica run (Note [stage placement]): a named rule, or the explicit array
 * `stageWorkers[s] = worker`. Plain data, so a generator can return it with its schedule and a plan
 * can record it.
 */
export type StagePlacement = StagePlacementName | readonly number[];
/** The named stage placements: 'loop' (stage s on worker s mod p) and 'v' (down the workers and back up). */
export const STAGE_PLACEMENT_NAMES = ['loop', 'v'] as const;
/** A named stage placement: 'loop' or 'v'. */
export type StagePlacementName = (typeof STAGE_PLACEMENT_NAMES)[number];

/** A schedule together with the placement its rows assume (a plain `Schedule` assumes 'loop'). */
export interface PlacedSchedule {
  /** The schedule, one list of slots per worker. */
  readonly schedule: Schedule;
  /** Which worker runs each stage, as the rows assume. */
  readonly stagePlacement: StagePlacement;
}

// Note [stage placement]
// Every action of stage s runs on one worker of its replica, stageWorkers[s], and the plan puts every
// node of stage s there (parameters included). The rule is a value:
//   'loop'  stage s on worker s mod p (Note [looping placement]);
//   'v'     out and back: stage s on worker s for s < p, on worker 2p-1-s for p <= s < 2p, as ZB-V and
//           DualPipeV place their two chunks. The turn (p-1 -> p) stays on worker p-1 and the last
//           stage sits with the first on worker 0. With more chunks the zig-zag goes on: chunk
//           c = floor(s / p) runs up the workers when c is even and down when c is odd;
//   array   stageWorkers itself, for anything else.
// With one chunk (stages = p) 'loop' and 'v' are both the plain pipeline. The runtime and the
// simulator take a hand-written schedule as 'loop' unless told otherwise (validateSchedule given no
// placement reads each stage's worker off the rows). Consecutive stages on one worker need no SEND/RECV (the
// validator refuses them there, and insertCommunication adds none). Schedule and plan must agree
// before any worker starts: the validator checks every action against the placement, and
// hostActions checks the schedule against plan.stageWorkers.

/** The worker of every stage: `stageWorkers[s]` in [0, workers). Throws a ScheduleError. */
export function resolveStagePlacement(placement: StagePlacement, stages: number, workers: number): number[] {
  checkCount('workers', workers);
  checkCount('stages', stages);
  if (placement === 'loop' || placement === 'v')
    return Array.from({ length: stages }, (_, s) => namedWorker(placement, s, workers));
  if (!Array.isArray(placement))
    throw new ScheduleError(
      `stage placement must be ${STAGE_PLACEMENT_NAMES.map((n) => `'${n}'`).join(', ')} or an array of ` +
        `workers, found ${JSON.stringify(placement)}`,
      { rule: 'stage placement', expected: [...STAGE_PLACEMENT_NAMES, 'number[]'], found: String(placement) },
    );
  if (placement.length !== stages)
    throw new ScheduleError(
      `stage placement [${placement.join(', ')}] has ${placement.length} entries, but there are ${stages} stages`,
      { rule: 'stage placement', expected: stages, found: placement.length },
    );
  placement.forEach((w, s) => {
    if (!Number.isSafeInteger(w) || w < 0 || w >= workers)
      throw new ScheduleError(
        `stage placement [${placement.join(', ')}] puts stage ${s} on worker ${w}, but a replica has ` +
          `workers 0..${workers - 1}`,
        { rule: 'stage placement', stage: s, expected: `an integer in [0, ${workers - 1}]`, found: w },
      );
  });
  return [...placement];
}

function namedWorker(placement: StagePlacementName, stage: number, workers: number): number {
  const chunk = Math.floor(stage / workers);
  const i = stage % workers;
  return placement === 'v' && chunk % 2 === 1 ? workers - 1 - i : i;
}

/** `'v'`, or `[0, 1, 1, 0]` for an array: how errors name a placement. */
export function formatStagePlacement(placement: StagePlacement): string {
  return typeof placement === 'string' ? `'${placement}'` : `[${placement.join(', ')}]`;
}

/** The named placement that gives `stageWorkers` (with its length and `workers`), or null. */
export function namePlacement(stageWorkers: readonly number[], workers: number): StagePlacementName | null {
  if (stageWorkers.length === 0 || stageWorkers.some((w) => w < 0 || w >= workers)) return null;
  for (const name of STAGE_PLACEMENT_NAMES) {
    const resolved = resolveStagePlacement(name, stageWorkers.length, workers);
    if (resolved.every((w, s) => w === stageWorkers[s])) return name;
  }
  return null;
}

/**
 * The worker of `stage` under `placement` (default 'loop'). Note [looping placement]: with p workers
 * and v model chunks per worker the model is cut into p*v contiguous stages and stage s lives on
 * worker s % p, so worker w holds stages w, w+p, w+2p, ... Every activation then hops to the next
 * worker (stage s -> s+1 is always cross-worker when p > 1), which is what lets interleaved 1F1B
 * shrink the bubble by v. With v = 1 this is the plain pipeline: stage s on worker s.
 */
export function workerOfStage(stage: number, workers: number, placement: StagePlacement = 'loop'): number {
  if (!Number.isSafeInteger(stage) || stage < 0)
    throw new ScheduleError(`workerOfStage: stage must be an integer >= 0, found ${stage}`, {
      rule: 'placement',
      found: stage,
    });
  const stages = typeof placement === 'string' ? stage + 1 : placement.length;
  if (stage >= stages)
    throw new ScheduleError(
      `workerOfStage: no stage ${stage} in the stage placement ${formatStagePlacement(placement)}`,
      { rule: 'placement', found: stage },
    );
  return resolveStagePlacement(placement, stages, workers)[stage]!;
}

/**
 * The stages worker `worker` holds, in model order: with 'loop' [w, w+p, ..., w+(v-1)p]. An array
 * placement brings its own stage count (`chunks` is then ignored).
 */
export function stagesOfWorker(
  worker: number,
  workers: number,
  chunks = 1,
  placement: StagePlacement = 'loop',
): number[] {
  checkCount('workers', workers);
  if (!Number.isSafeInteger(worker) || worker < 0 || worker >= workers)
    throw new ScheduleError(`stagesOfWorker: no worker ${worker} among ${workers}`, {
      rule: 'placement',
      worker,
      expected: `an integer in [0, ${workers - 1}]`,
      found: worker,
    });
  return stagesPerWorker(workers, chunks, placement)[worker]!;
}

/** For every worker, the stages it holds (Note [stage placement]). */
export function stagesPerWorker(workers: number, chunks = 1, placement: StagePlacement = 'loop'): number[][] {
  checkCount('workers', workers);
  checkCount('chunks', chunks);
  const stages = typeof placement === 'string' ? workers * chunks : placement.length;
  const perWorker: number[][] = Array.from({ length: workers }, () => []);
  for (const [s, w] of resolveStagePlacement(placement, stages, workers).entries()) perWorker[w]!.push(s);
  return perWorker;
}

/** `worker 0: stages 0, 4\nworker 1: stages 1, 5` */
export function describePlacement(workers: number, chunks = 1, placement: StagePlacement = 'loop'): string {
  return stagesPerWorker(workers, chunks, placement)
    .map((stages, w) => `worker ${w}: stage${stages.length > 1 ? 's' : ''} ${stages.join(', ')}`)
    .join('\n');
}

/** What a schedule's actions say about it: sizes, and which worker runs each stage. */
export interface ScheduleShape {
  /** Workers (rows). */
  readonly workers: number;
  /** Stages. */
  readonly stages: number;
  /** Microbatches. */
  readonly microbatches: number;
  /**
   * Per stage, its worker: the placement's when one is given, else the worker whose list first
   * mentions the stage, or -1 if none does.
   */
  readonly workerOfStage: readonly number[];
  /** True when the schedule carries SEND/RECV actions (then every cross-worker hop must have them). */
  readonly explicitCommunication: boolean;
}

/** Sizes a caller may know better than the actions, and the placement the rows assume. */
export interface ShapeOptions {
  /** Stages (default: inferred from the actions, or the length of an array placement). */
  readonly stages?: number;
  /** Microbatches (default: inferred from the actions). */
  readonly microbatches?: number;
  /** Without one, each stage's worker is inferred from the rows. */
  readonly stagePlacement?: StagePlacement;
}

/**
 * Infers the shape of a schedule from its actions (a hand-written CSV says nothing else): stages and
 * microbatches are one more than the largest index seen, unless given (an array placement gives the
 * stages). Expects well-formed actions; the validator reports malformed ones and stages that appear on
 * two workers, or on a worker the placement does not give them.
 */
export function scheduleShape(schedule: Schedule, sizes: ShapeOptions = {}): ScheduleShape {
  let maxStage = -1;
  let maxMicrobatch = -1;
  let explicitCommunication = false;
  for (const list of schedule)
    for (const slot of list)
      for (const a of actionsOf(slot)) {
        maxStage = Math.max(maxStage, a.stage);
        maxMicrobatch = Math.max(maxMicrobatch, a.microbatch);
        if (isCommunication(a)) explicitCommunication = true;
      }
  const placement = sizes.stagePlacement;
  const stages = sizes.stages ?? (typeof placement === 'object' ? placement.length : maxStage + 1);
  const owner = new Array<number>(Math.max(stages, maxStage + 1)).fill(-1);
  schedule.forEach((list, w) => {
    for (const slot of list) for (const a of actionsOf(slot)) if (owner[a.stage] === -1) owner[a.stage] = w;
  });
  return {
    workers: schedule.length,
    stages,
    microbatches: sizes.microbatches ?? maxMicrobatch + 1,
    workerOfStage:
      placement === undefined
        ? owner.slice(0, stages)
        : resolveStagePlacement(placement, stages, schedule.length),
    explicitCommunication,
  };
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new ScheduleError(`${name} must be an integer >= 1, found ${value}`, {
      rule: 'placement',
      expected: 'an integer >= 1',
      found: value,
    });
}
