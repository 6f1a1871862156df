import { InputError } from '../errors.ts';
import { CONST, PARAM } from '../graph/columns.ts';
import { channelWindow, type FlowSettings, sinkWorkers, sourceStages } from '../partition/channels.ts';
import type { Plan } from '../partition/plan.ts';
import type { HostEffect, HostStats, TaskInfo } from './host-types.ts';

// Note [activation credits]
// A fast stage must not pile activations up at a slow one. A channel is what one stage of a replica
// sends to one other worker (src/partition/channels.ts); its window is a number of microbatches, as
// many as fit in the runtime's `linkWindowBytes` (at least one, and at least the schedule's floor,
// below). A host starts the forward of a node for microbatch mb only when, on every channel it
// sends on, every microbatch up to mb - window has been consumed: each reader of the channel on the
// other worker ran its forward for it, and that host sent back a `credit` (stage, mb). So at most a
// window of microbatches is sent and not consumed per channel, and what waits at a receiver (its
// `queuedBytes`) is at most the sum of its channels' windows. Gradients are not limited: each one
// answers an activation of a microbatch in flight, which the schedule and the budget already bound.
//
// Why this cannot deadlock:
// - In dataflow order a blocked forward is set aside and the host runs anything else. The oldest
//   microbatch whose forwards are not all done is never blocked (everything before it is consumed
//   everywhere), so it always advances.
// - Under a schedule a host runs its actions in order, and a blocked forward holds up the rest. A
//   forward then waits for the forwards of mb - window of the stages reading its channels, which
//   is a dependency like any other: before any worker starts, a dry run of the schedule with these
//   dependencies (`minCreditWindow`, src/schedule/credits.ts) finds the smallest window (1, 2, 4 ...)
//   under which every list runs to the end, and that is the floor of every window (the runtime's
//   `FlowSettings.minWindow`). Actions wait only for events that never un-happen, so one run to the
//   end means every timing runs to the end; a larger window only drops dependencies. The generated
//   schedules (GPipe, 1F1B, interleaved 1F1B, ZB-H1) need 1; a skip connection over the turn of a V
//   can need 2. A schedule whose stage runs its forwards out of microbatch order gets every
//   microbatch (no limit), as does one that runs to the end with no smaller window.
// Credits of a step are dropped in any other step; a step's start resets every channel.

/** A stage's activations to another worker, as its sender counts them. */
interface OutChannel {
  readonly to: number;
  /** Its index in `FlowControl.outs`. */
  readonly index: number;
  window: number;
  /** Every microbatch below `prefix` is consumed; `consumed` marks the ones above. */
  prefix: number;
  consumed: Uint8Array;
}

/** Another worker's stage's activations, as their receiver counts them. */
interface InChannel {
  readonly stage: number;
  readonly from: number;
  /** Its index in `FlowControl.ins`. */
  readonly index: number;
  /** The actors here that read it, and per microbatch how many of them ran their forward. */
  readers: number;
  ran: Int32Array;
  /** Per microbatch, bytes delivered and not consumed yet. */
  queued: Float64Array;
}

/**
 * A host's side of Note [activation credits]: the windows of the channels it sends on, and the credits
 * it owes for those it receives. Counts `queuedBytes` whether or not credits are on (`settings` null).
 */
export class FlowControl {
  private readonly out = new Map<number, OutChannel>();
  private readonly in = new Map<number, InChannel>();
  /** The channels, by index: `out` and `in` in the order they were made. */
  private readonly outs: OutChannel[] = [];
  private readonly ins: InChannel[] = [];
  /**
   * Per actor (replica * nodes + node), the indices of the channels its forward sends on and of those
   * it reads, as ranges of `sendList` and `readList` (flat: a million-node plan has an actor per node).
   */
  private readonly sendAt: Int32Array;
  private readonly sendList: Int32Array;
  private readonly readAt: Int32Array;
  private readonly readList: Int32Array;
  private readonly nodes: number;

  constructor(
    private readonly plan: Plan,
    worker: number,
    readonly settings: FlowSettings | null,
    private readonly counters: HostStats,
  ) {
    const { graph, placement, workers } = plan;
    this.nodes = graph.size;
    const actors = plan.replicas * this.nodes;
    this.sendAt = new Int32Array(actors + 1);
    this.readAt = new Int32Array(actors + 1);
    // Sized for the most there can be (an entry per consumer edge, and one per input edge) and left
    // unwritten past what there is: growing arrays of half a million entries cost more than the rest.
    this.sendList = new Int32Array(plan.replicas * plan.consumerEdges.node.length);
    this.readList = new Int32Array(plan.replicas * graph.columns.inputIds.length);
    let sends = 0;
    let reads = 0;
    const scratch: number[] = [];
    const kinds = graph.columns.kinds;
    for (let at = 0; at < actors; at++) {
      this.sendAt[at] = sends;
      this.readAt[at] = reads;
      const r = Math.floor(at / this.nodes);
      const id = at - r * this.nodes;
      if (placement[r]![id] !== worker || kinds[id] === CONST || kinds[id] === PARAM) continue;
      const stage = plan.stageOf[id]!;
      const sinks = sinkWorkers(plan, id, r, scratch);
      for (let k = 0; k < sinks; k++) {
        const to = scratch[k]!;
        let ch = this.out.get(stage * workers + to);
        if (ch === undefined) {
          ch = { to, index: this.outs.length, window: 1, prefix: 0, consumed: new Uint8Array(0) };
          this.out.set(stage * workers + to, ch);
          this.outs.push(ch);
        }
        this.sendList[sends++] = ch.index;
      }
      const sources = sourceStages(plan, id, r, scratch);
      for (let k = 0; k < sources; k++) {
        const source = scratch[k]!;
        let ch = this.in.get(source);
        if (ch === undefined) {
          const from = (r * plan.group + plan.stageWorkers[source]!) % workers;
          ch = {
            stage: source,
            from,
            index: this.ins.length,
            readers: 0,
            ran: new Int32Array(0),
            queued: new Float64Array(0),
          };
          this.in.set(source, ch);
          this.ins.push(ch);
        }
        ch.readers++;
        this.readList[reads++] = ch.index;
      }
    }
    this.sendAt[actors] = sends;
    this.readAt[actors] = reads;
  }

  /** A step starts: every channel empty, windows from the bytes of a microbatch (`bytes` of a node in a replica). */
  start(microbatches: number, bytes: (node: number, replica: number) => number): void {
    // Each channel's bytes per microbatch: what its senders send, in actor order.
    const perMb = this.settings === null ? null : new Float64Array(this.outs.length);
    if (perMb !== null) {
      for (let at = 0; at < this.sendAt.length - 1; at++) {
        const end = this.sendAt[at + 1]!;
        if (this.sendAt[at] === end) continue;
        const replica = Math.floor(at / this.nodes);
        const size = bytes(at - replica * this.nodes, replica);
        for (let k = this.sendAt[at]!; k < end; k++) perMb[this.sendList[k]!]! += size;
      }
    }
    for (const ch of this.outs) {
      ch.window =
        perMb === null ? microbatches : channelWindow(this.settings!, perMb[ch.index]!, microbatches);
      ch.prefix = 0;
      if (ch.consumed.length === microbatches) ch.consumed.fill(0);
      else ch.consumed = new Uint8Array(microbatches);
    }
    for (const ch of this.in.values()) {
      if (ch.ran.length === microbatches) {
        ch.ran.fill(0);
        ch.queued.fill(0);
      } else {
        ch.ran = new Int32Array(microbatches);
        ch.queued = new Float64Array(microbatches);
      }
    }
    this.counters.queuedBytes = 0;
    this.counters.peakQueuedBytes = 0;
  }

  /** Whether a task may start now: a forward waits while a channel it sends on has its window full. */
  allows(task: TaskInfo): boolean {
    if (task.phase !== 'forward') return true;
    const at = task.replica * this.nodes + task.node;
    for (let k = this.sendAt[at]!; k < this.sendAt[at + 1]!; k++) {
      const ch = this.outs[this.sendList[k]!]!;
      if (task.mb >= ch.prefix + ch.window) return false;
    }
    return true;
  }

  /** Node `node`'s activation for `mb` arrived from another worker: it waits until its readers ran. */
  arrived(node: number, mb: number, bytes: number): void {
    const ch = this.in.get(this.plan.stageOf[node]!);
    if (ch === undefined || mb >= ch.queued.length) return;
    ch.queued[mb]! += bytes;
    const c = this.counters;
    c.queuedBytes += bytes;
    if (c.queuedBytes > c.peakQueuedBytes) c.peakQueuedBytes = c.queuedBytes;
  }

  /** An actor ran its forward for `mb`: a channel whose readers all did is consumed, and credited. */
  forwardRan<T>(replica: number, node: number, mb: number, step: number, effects: HostEffect<T>[]): void {
    const at = replica * this.nodes + node;
    for (let k = this.readAt[at]!; k < this.readAt[at + 1]!; k++) {
      const ch = this.ins[this.readList[k]!]!;
      if (++ch.ran[mb]! !== ch.readers) continue;
      this.counters.queuedBytes -= ch.queued[mb]!;
      ch.queued[mb] = 0;
      if (this.settings !== null)
        effects.push({
          kind: 'credit',
          worker: ch.from,
          credit: { kind: 'credit', step, mb, stage: ch.stage },
        });
    }
  }

  /** Worker `from` consumed microbatch `mb` of stage `stage`'s activations; true when a window moved. */
  credit(from: number, stage: number, mb: number): boolean {
    const ch = this.out.get(stage * this.plan.workers + from);
    if (ch === undefined || mb >= ch.consumed.length)
      throw new InputError(
        `a credit from worker ${from} for stage ${stage}, microbatch ${mb}, which sends it nothing`,
        {
          stage,
          microbatch: mb,
        },
      );
    ch.consumed[mb] = 1;
    const before = ch.prefix;
    while (ch.prefix < ch.consumed.length && ch.consumed[ch.prefix] === 1) ch.prefix++;
    return ch.prefix !== before;
  }
}
