// The options of createRuntime: compile's, and how the runtime runs the plan; and their check.
import type { FailpointAction } from '../actor/failpoint.ts';
import type { TaskInfo } from '../actor/host.ts';
import type { TensorMap } from '../autodiff/forward.ts';
import { InputError } from '../errors.ts';
import type { LrSchedule } from '../optim/schedule.ts';
import { checkOptimizerSpec, type OptimizerSpec } from '../optim/spec.ts';
import type { CompileOptions } from '../partition/plan.ts';
import type { PoolOptions } from '../tensor/pool.ts';
import { checkOptions, type OptionRule, oneOf, RULES } from '../util/option-rules.ts';
import { CLUSTER_MODES, type ClusterMode } from './clusters.ts';
import type { ScheduleSpec } from './pipeline.ts';
import { type NatsClusterOptions, type ResolvedCluster, resolveCluster } from './rendezvous.ts';

/**
 * What `createRuntime` is told: the plan's options (workers, replicas, placement, stages, parameter
 * placement), and how to run it: the mode or cluster, microbatches, a schedule, the optimizer,
 * parameters, traces, timeouts, your own ops.
 */
export interface RuntimeOptions extends CompileOptions {
  /**
   * A pipeline schedule: one of SCHEDULE_KINDS ('gpipe', '1f1b', 'interleaved-1f1b', 'zb-h1',
   * 'interleaved-zb', 'looped-bfs', 'zb-v', 'dualpipe-v'), or a hand-written one (one
   * action list per worker of a replica), alone or with its stage placement ({ schedule,
   * stagePlacement }). Stages are cut contiguously and stage s runs on the worker the stage placement
   * gives it (option `stagePlacement`, default 'loop': s mod workers per replica). Without a
   * schedule, hosts run in dataflow order.
   */
  schedule?: ScheduleSpec;
  /**
   * Model chunks per worker, for interleaved and V schedules (default 1, 2 for 'zb-v' and
   * 'dualpipe-v', or for a hand-written schedule with an array placement, its length over the workers).
   */
  chunks?: number;
  /**
   * Where the hosts run (clusters.ts): 'threads' (default), one worker thread per worker;
   * 'in-process', every host in this thread, messages passed by reference; 'loopback', every host in
   * this thread, every message encoded into bytes and decoded and checked on the other side, as a
   * network carries it (Note [byte framing]); 'tcp-loopback', the same over TCP connections on
   * 127.0.0.1 (Note [stream framing]).
   */
  mode?: ClusterMode;
  /**
   * Hosts on node processes (`backflow node --nats URL --cluster NAME`), found through NATS: mode
   * 'nats' (Note [rendezvous]). The plan's workers are spread over the nodes in blocks.
   */
  cluster?: NatsClusterOptions;
  /**
   * Modules that define the graph's own ops (with `defineOp`), imported by this thread and then by
   * every worker before it compiles the plan (Note [user ops on workers]): absolute paths, file:
   * URLs, or package names (resolved as backflow's own imports are, from where it is installed);
   * a path starting with `./` or `../` is resolved against `process.cwd()`. Before any worker starts,
   * a module that cannot be imported is an OpModuleError, and an op of the graph that neither the
   * built-in ops nor these modules define is an OpError naming its node.
   */
  ops?: readonly string[];
  /** Microbatches per replica per step (default 1). */
  microbatches?: number;
  /** Initial parameter values (default: the graph's initializers with `seed`). */
  params?: TensorMap;
  /** Seeds the initializers when `params` is not given (default 0). */
  seed?: number;
  /** A step that has not finished by then rejects with StepTimeoutError (default 30 s). */
  stepTimeoutMs?: number;
  /** In-process only: deliver messages in a seeded random order. */
  shuffleSeed?: number;
  /**
   * Check the graph before starting (default true). A builder's graph is checked on its columns,
   * without a node object a node (Note [checks on columns]): about 0.2 s for a million nodes.
   */
  validate?: boolean;
  /**
   * Runs this optimizer where the parameters live: gradients stay on their workers, and once a step's
   * loss and global norm are known every worker updates the parameters it owns (Note [deferred
   * update]). Without one, steps return the gradients.
   */
  optimizer?: OptimizerSpec;
  /** The learning rate per update (from 1), overriding the optimizer's. */
  lrSchedule?: LrSchedule;
  /** Clip the global gradient norm to this value before the update. */
  clipNorm?: number;
  /** What a non-finite gradient does: reject the step (default) or skip its update. */
  nonFinite?: 'error' | 'skip';
  /**
   * Who decides a step's update when every worker holds a copy of every parameter that gets a
   * gradient (replicated parameters with one worker per replica, or one worker) and no input is in
   * `wrt`: 'local' (default), each host, as soon as it has every gradient and every loss, so the
   * update overlaps the reports' way to the coordinator (Note [local update]); 'coordinator', the
   * coordinator, once every report is in (Note [deferred update]), as for every other plan.
   */
  updates?: 'local' | 'coordinator';
  /**
   * Anomaly mode: every host checks each value it makes for NaN and infinities, so that a non-finite
   * step names the first node that made one, its microbatch and phase. Costs a pass over every tensor.
   */
  anomaly?: boolean;
  /** Record every step's trace (task spans, messages, memory), returned as `StepResult.trace`. */
  trace?: boolean;
  /**
   * Threads and loopback: each host recycles its tensors' storages through a pool per shape class
   * (Note [storage pool]), default on; `false` turns it off. `poison` fills recycled storages with NaN
   * (tests).
   */
  pool?: false | PoolOptions;
  /**
   * Each worker's budget of tensor bytes, in MiB (Note [memory budget]): a plan whose estimate is
   * over it is refused before any worker starts, and a task whose output would take a worker's live
   * tensors over it fails its step, both with a MemoryBudgetError. Default: half of this machine's
   * memory shared by the workers. Infinity: no budget.
   */
  memoryLimitMb?: number;
  /**
   * The most workers this runtime starts. Default: 4 per core on threads, and 256 anywhere; more is
   * refused with an InputError before anything starts.
   */
  maxWorkers?: number;
  /**
   * Bytes of activations one stage may have sent to another worker and not had consumed yet
   * (Note [activation credits]); its forwards wait for credits past that. At least one microbatch's
   * (and what the schedule needs); default 64 MiB; `false`: no limit.
   */
  linkWindowBytes?: number | false;
  /** Where warnings go (a parameter or input in `wrt` the loss does not depend on); default process.emitWarning. */
  onWarning?: (message: string) => void;
  /** Hook for tests: a host reached a 'pause' failpoint. */
  onFailpoint?: (worker: number, action: FailpointAction, task: TaskInfo) => void;
}

/** What the runtime's own options accept (compile checks its options; pipeline.ts the schedule's). */
const RUNTIME_OPTIONS = {
  mode: oneOf(CLUSTER_MODES),
  microbatches: RULES.count,
  stepTimeoutMs: RULES.timeoutMs,
  seed: RULES.integer,
  shuffleSeed: RULES.integer,
  nonFinite: oneOf(['error', 'skip']),
  updates: oneOf(['local', 'coordinator']),
  // A NaN norm would never clip, a negative one flip every update.
  clipNorm: RULES.positive,
} satisfies { readonly [K in keyof RuntimeOptions]?: OptionRule };

/**
 * Checks createRuntime's options before any worker starts (invariant 8): those of the table above
 * and the optimizer. Each would otherwise fail late or not at all: a microbatch count at every step,
 * a NaN deadline as steps that time out at once, a fractional seed as the parameters of the integer
 * below it. Resolves where the hosts run: the mode, and in mode 'nats' the nodes' cluster.
 */
export function checkRuntimeOptions(options: RuntimeOptions): {
  mode: ClusterMode;
  nodes: ResolvedCluster | undefined;
} {
  checkOptions(options, RUNTIME_OPTIONS, 'createRuntime');
  if (options.optimizer !== undefined) checkOptimizerSpec(options.optimizer, 'createRuntime: optimizer');
  const mode = options.mode ?? (options.cluster !== undefined ? 'nats' : 'threads');
  // Checked before anything connects: a typo in the cluster options is not a 30 s rendezvous.
  const nodes = options.cluster === undefined ? undefined : resolveCluster(options.cluster);
  if ((mode === 'nats') !== (nodes !== undefined))
    throw new InputError(
      nodes === undefined
        ? "mode 'nats': expected the cluster option { nats, name, nodes }"
        : `cluster: hosts on node processes run in mode 'nats', found mode ${JSON.stringify(mode)}`,
      { option: 'mode', found: mode },
    );
  return { mode, nodes };
}
