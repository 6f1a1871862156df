// What a runtime may ask of the machine, resolved and checked before any worker starts: how many
// workers, each worker's memory budget (Note [memory budget]) and the credits per channel (Note
// [activation credits]).
import { availableParallelism, totalmem } from 'node:os';
import type { HostLimits } from '../actor/host.ts';
import { InputError } from '../errors.ts';
import { type OptimizerSpec, optimizerStateBytes } from '../optim/spec.ts';
import { creditWaits, type FlowSettings } from '../partition/channels.ts';
import { type ComputeAction, checkMemoryBudget, estimateMemory, fmtBytes } from '../partition/memory.ts';
import type { Plan } from '../partition/plan.ts';
import type { Schedule } from '../schedule/action.ts';
import { minCreditWindow } from '../schedule/credits.ts';

/** Workers per core a runtime starts on threads without `maxWorkers`. */
export const WORKERS_PER_CORE = 4;
/** Hosts any runtime starts without `maxWorkers` (past this, simulate: src/sim). */
export const MAX_WORKERS = 256;
/** The share of the machine's memory the workers' budgets add up to by default. */
export const MEMORY_FRACTION = 0.5;
/** Bytes of activations a channel may have sent and not consumed, by default (Note [activation credits]). */
export const LINK_WINDOW_BYTES = 64 * 1024 * 1024;

export interface BudgetOptions {
  readonly workers: number;
  readonly maxWorkers?: number | undefined;
  readonly memoryLimitMb?: number | undefined;
  readonly linkWindowBytes?: number | false | undefined;
  readonly microbatches?: number | undefined;
  readonly optimizer?: OptimizerSpec | undefined;
}

/**
 * Refuses a worker count the machine cannot run: on threads, more than WORKERS_PER_CORE per core;
 * anywhere, more than MAX_WORKERS; unless `maxWorkers` allows it. `sameThread`: the hosts share this
 * thread (no thread each).
 */
export function checkWorkerCount(options: BudgetOptions, sameThread: boolean): void {
  const { workers, maxWorkers } = options;
  if (maxWorkers !== undefined && (!Number.isInteger(maxWorkers) || maxWorkers < 1))
    throw new InputError(`createRuntime: maxWorkers must be an integer >= 1, found ${maxWorkers}`, {
      option: 'maxWorkers',
      expected: 'an integer >= 1',
      found: maxWorkers,
    });
  const cores = availableParallelism();
  const limit = maxWorkers ?? (sameThread ? MAX_WORKERS : Math.min(MAX_WORKERS, WORKERS_PER_CORE * cores));
  if (workers <= limit) return;
  const why =
    maxWorkers !== undefined
      ? `maxWorkers is ${maxWorkers}`
      : sameThread
        ? `at most ${MAX_WORKERS} hosts`
        : `at most ${limit}: ${WORKERS_PER_CORE} threads per core on ${cores} core${cores === 1 ? '' : 's'}`;
  throw new InputError(
    `createRuntime: ${workers} workers is more than this runtime starts (${why}); ` +
      'set maxWorkers to start more anyway, or simulate the configuration (simulatePipeline)',
    { option: 'workers', expected: `<= ${limit}`, found: workers },
  );
}

/** Each worker's budget in bytes: `memoryLimitMb`, or MEMORY_FRACTION of the machine's memory shared by the workers. */
export function memoryBudget(options: BudgetOptions): { bytes: number; how: string } {
  const mb = options.memoryLimitMb;
  if (mb === undefined) {
    const bytes = Math.floor((totalmem() * MEMORY_FRACTION) / options.workers);
    return {
      bytes,
      how: `the default: ${MEMORY_FRACTION} of this machine's ${fmtBytes(totalmem())} over ${options.workers} workers`,
    };
  }
  if (typeof mb !== 'number' || Number.isNaN(mb) || mb <= 0)
    throw new InputError(`createRuntime: memoryLimitMb must be a number > 0 (MiB per worker), found ${mb}`, {
      option: 'memoryLimitMb',
      expected: 'a number > 0',
      found: mb,
    });
  return { bytes: mb * 1024 * 1024, how: `memoryLimitMb ${mb}` };
}

/**
 * The limits every host gets, checked against the plan before any worker starts: the credit window
 * (with the schedule's floor from its dry run), and the plan's estimate within the memory budget.
 * Throws MemoryBudgetError (or InputError for a bad option).
 */
export function hostLimits(
  plan: Plan,
  options: BudgetOptions,
  pipeline: { schedule: Schedule; actions: readonly (readonly ComputeAction[])[] } | null,
): HostLimits {
  const microbatches = options.microbatches ?? 1;
  const window = options.linkWindowBytes ?? LINK_WINDOW_BYTES;
  if (window !== false && (typeof window !== 'number' || !(window > 0)))
    throw new InputError(`createRuntime: linkWindowBytes must be a number > 0 or false, found ${window}`, {
      option: 'linkWindowBytes',
      expected: 'a number > 0, or false',
      found: window,
    });
  let flow: FlowSettings | null = null;
  if (window !== false) {
    const minWindow =
      pipeline === null
        ? 1
        : minCreditWindow(
            pipeline.schedule,
            {
              workers: plan.group,
              stages: plan.stages,
              microbatches,
              workerOfStage: plan.stageWorkers,
              explicitCommunication: false,
            },
            creditWaits(plan),
          );
    flow = { windowBytes: window, minWindow };
  }
  const budget = memoryBudget(options);
  const estimate = estimateMemory(plan, {
    microbatches,
    actions: pipeline?.actions ?? null,
    optimizerBytesPerElement: options.optimizer === undefined ? 0 : optimizerStateBytes(options.optimizer),
    flow,
  });
  checkMemoryBudget(estimate, budget.bytes, budget.how);
  return { memoryBytes: budget.bytes, flow };
}
