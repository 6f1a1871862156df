import { MemoryBudgetError } from '../errors.ts';
import { label } from '../graph/graph.ts';
import { fmtBytes } from '../partition/memory.ts';
import type { Plan } from '../partition/plan.ts';
import { bytesPerElement } from '../tensor/tensor.ts';
import type { HostStats, Task } from './host-types.ts';

/**
 * A host's books of live tensor bytes against its budget (Note [memory budget] in
 * src/partition/memory.ts): the parameters it holds (counted by the parameter side) and those of
 * other hosts it was sent for the step, a gradient per trainable parameter held, the optimizer's
 * state, what the actors keep for backwards and the activations queued for them. A task whose output
 * would take the books over the budget fails before it allocates.
 */
export class HostBudget {
  /** Bytes of other hosts' parameters received this step. */
  private paramsIn = 0;
  /** Bytes of the gradients of the trainable parameters held here (each exists by the step's end). */
  private readonly gradBytes: number;

  constructor(
    plan: Plan,
    private readonly worker: number,
    readonly limit: number,
    private readonly counters: HostStats,
  ) {
    let grads = 0;
    for (const id of plan.params) {
      if (!plan.paramWorkers.get(id)?.includes(worker)) continue;
      const node = plan.graph.nodeAt(id);
      grads += (node.shape as number[]).reduce((p, d) => p * d, 1) * bytesPerElement(node.dtype);
    }
    this.gradBytes = grads;
  }

  /** The live bytes now, by the books (also written to the counters). */
  live(): number {
    const c = this.counters;
    c.liveBytes =
      c.paramBytes + this.paramsIn + this.gradBytes + c.optimizerBytes + c.keptBytes + c.queuedBytes;
    return c.liveBytes;
  }

  /** A step starts. */
  start(): void {
    this.paramsIn = 0;
    this.counters.peakLiveBytes = 0;
  }

  /** Another host's parameter arrived for the step. */
  paramArrived(bytes: number): void {
    this.paramsIn += bytes;
  }

  /** Before `task` makes `bytes` of output: a MemoryBudgetError naming it if they would not fit. */
  check(plan: Plan, task: Task<unknown>, bytes: number, step: number): void {
    const live = this.live();
    const c = this.counters;
    if (live + bytes > c.peakLiveBytes) c.peakLiveBytes = live + bytes;
    if (live + bytes <= this.limit) return;
    const node = plan.graph.nodeAt(task.node);
    throw new MemoryBudgetError(
      `worker ${this.worker}: the ${task.phase} of ${label(node)} (${node.op}) would make ${fmtBytes(bytes)} ` +
        `while the worker holds ${fmtBytes(live)} of tensors (parameters ${fmtBytes(c.paramBytes + this.paramsIn)}, ` +
        `gradients ${fmtBytes(this.gradBytes)}, optimizer state ${fmtBytes(c.optimizerBytes)}, kept ` +
        `${fmtBytes(c.keptBytes)}, queued ${fmtBytes(c.queuedBytes)}): over its memory budget of ` +
        `${fmtBytes(this.limit)} (memoryLimitMb)`,
      {
        worker: this.worker,
        node: label(node),
        op: node.op,
        step,
        microbatch: task.mb,
        replica: task.replica,
        phase: task.phase === 'forward' ? 'forward' : 'backward',
        expected: this.limit,
        found: live + bytes,
      },
    );
  }
}
