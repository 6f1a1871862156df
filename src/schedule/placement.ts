import { ScheduleError } from '../errors.ts';
import { isCommunication, type Schedule } from './action.ts';

/**
 * Where stages live. Note [looping placement]: with p workers and v model chunks per worker the model
 * is cut into p*v contiguous stages and stage s lives on worker s % p, so worker w holds stages
 * w, w+p, w+2p, ... Every activation then hops to the next worker (stage s -> s+1 is always
 * cross-worker when p > 1), which is what lets interleaved 1F1B shrink the bubble by v. With v = 1 this
 * is the plain pipeline: stage s on worker s.
 */
export function workerOfStage(stage: number, workers: number): number {
  checkCount('workers', workers);
  if (!Number.isSafeInteger(stage) || stage < 0)
    throw new ScheduleError(`workerOfStage: stage must be an integer >= 0, found ${stage}`, {
      rule: 'placement',
      found: stage,
    });
  return stage % workers;
}

/** The stages worker `worker` holds, in model order: [w, w+p, ..., w+(v-1)p]. */
export function stagesOfWorker(worker: number, workers: number, chunks = 1): number[] {
  checkCount('workers', workers);
  checkCount('chunks', chunks);
  if (!Number.isSafeInteger(worker) || worker < 0 || worker >= workers)
    throw new ScheduleError(`stagesOfWorker: no worker ${worker} among ${workers}`, {
      rule: 'placement',
      worker,
      expected: `an integer in [0, ${workers - 1}]`,
      found: worker,
    });
  return Array.from({ length: chunks }, (_, chunk) => chunk * workers + worker);
}

/** For every worker, the stages it holds (see Note [looping placement]). */
export function stagesPerWorker(workers: number, chunks = 1): number[][] {
  checkCount('workers', workers);
  return Array.from({ length: workers }, (_, w) => stagesOfWorker(w, workers, chunks));
}

/** `worker 0: stages 0, 4\nworker 1: stages 1, 5` */
export function describePlacement(workers: number, chunks = 1): string {
  return stagesPerWorker(workers, chunks)
    .map((stages, w) => `worker ${w}: stage${stages.length > 1 ? 's' : ''} ${stages.join(', ')}`)
    .join('\n');
}

/** What a schedule's actions say about it: sizes, and which worker runs each stage. */
export interface ScheduleShape {
  readonly workers: number;
  readonly stages: number;
  readonly microbatches: number;
  /** Per stage, the worker whose list first mentions it, or -1 if none does. */
  readonly workerOfStage: readonly number[];
  /** True when the schedule carries SEND/RECV actions (then every cross-worker hop must have them). */
  readonly explicitCommunication: boolean;
}

/**
 * Infers the shape of a schedule from its actions (a hand-written CSV says nothing else): stages and
 * microbatches are one more than the largest index seen, unless given. Expects well-formed actions; the
 * validator reports malformed ones and stages that appear on two workers.
 */
export function scheduleShape(
  schedule: Schedule,
  sizes: { stages?: number; microbatches?: number } = {},
): ScheduleShape {
  let maxStage = -1;
  let maxMicrobatch = -1;
  let explicitCommunication = false;
  for (const list of schedule)
    for (const slot of list) {
      if (slot === null) continue;
      maxStage = Math.max(maxStage, slot.stage);
      maxMicrobatch = Math.max(maxMicrobatch, slot.microbatch);
      if (isCommunication(slot)) explicitCommunication = true;
    }
  const stages = sizes.stages ?? maxStage + 1;
  const owner = new Array<number>(Math.max(stages, maxStage + 1)).fill(-1);
  schedule.forEach((list, w) => {
    for (const slot of list) if (slot !== null && owner[slot.stage] === -1) owner[slot.stage] = w;
  });
  return {
    workers: schedule.length,
    stages,
    microbatches: sizes.microbatches ?? maxMicrobatch + 1,
    workerOfStage: owner.slice(0, stages),
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
