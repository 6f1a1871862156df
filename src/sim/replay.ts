import type { HostAction } from '../actor/task-queue.ts';
import type { Plan } from '../partition/plan.ts';
import { cpuTimeTrace, linkLatency, mergeTraces } from '../trace/calibrate.ts';
import type { Trace } from '../trace/trace.ts';
import { traceCosts } from './cost.ts';
import { type SimResult, simulate } from './simulate.ts';

/**
 * How `replayTraces` simulates a measured run: its size, its schedule, and the cores it had and
 * should have.
 */
export interface ReplayOptions {
  /** Microbatches per replica, as in the measured run. */
  microbatches: number;
  /** The batch size of the measured step. */
  batchSize: number;
  /** Per-worker schedule actions, as the run followed them. */
  schedule?: readonly (readonly HostAction[])[];
  /** The cores the measured run had: spans are turned into core time for that many (Note [contended spans]). */
  measuredCores: number;
  /** The cores to simulate (default: as measured). */
  cores?: number;
}

/**
 * The simulator fed with a real run's costs: each (node, phase)'s core time from the traces (Note
 * [contended spans]) and the link latency of their messages. Tensors are transferred, so there is no
 * per-byte cost. Returns the simulated step and the latency it used.
 */
export function replayTraces(
  plan: Plan,
  traces: readonly Trace[],
  options: ReplayOptions,
): SimResult & {
  /** The link latency it used, measured from the traces' messages (0 without any), in milliseconds. */
  latencyMs: number;
} {
  const latencyMs = linkLatency(mergeTraces(traces)) ?? 0;
  const cost = traceCosts(mergeTraces(traces.map((t) => cpuTimeTrace(t, options.measuredCores))), {
    latencyMs,
  });
  const result = simulate(plan, {
    microbatches: options.microbatches,
    batchSize: options.batchSize,
    cost,
    ...(options.schedule !== undefined ? { schedule: options.schedule } : {}),
    cores: options.cores ?? options.measuredCores,
  });
  return { ...result, latencyMs };
}
