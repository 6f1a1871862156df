import { type Bindings, resolveShape } from '../autodiff/forward.ts';
import { runVjp } from '../autodiff/vjp.ts';
import { label } from '../graph/graph.ts';
import type { RunContext } from '../ops/op.ts';
import type { Plan } from '../partition/plan.ts';
import { bytesPerElement } from '../tensor/tensor.ts';
import type { ValueEngine } from './engine.ts';
import type { FlowControl } from './flow-control.ts';
import type { HostEffect, HostStats, Task } from './host-types.ts';
import { KeptSource, type ShardTable, type ShardTables } from './kept-source.ts';
import type { StepStart } from './messages.ts';
import type { Outbox } from './outbox.ts';
import type { Router } from './router.ts';
import { toWireError } from './wire-error.ts';

/**
 * What a task computes: a node's forward for one microbatch (what it keeps for the VJP counted), or
 * its VJP; the router takes the results where they go. The loss reports its value and seeds its own
 * backward; an input named in `wrt` reports its gradient.
 */
export class TaskRunner<T> {
  /** Anomaly mode: report the first non-finite value each task makes (forward outputs, contributions). */
  anomalies = false;
  private shards: ShardTable = [];
  /** The run context of each shard (Note [run context]), by replica * microbatches + mb. */
  private runs: RunContext[] = [];
  /** A training step (else an inference step: Note [inference steps] in src/runtime/infer.ts). */
  private training = true;
  /** In an inference step, the nodes whose values are reported (1), by node id. */
  private reported: Uint8Array | null = null;
  private microbatches = 0;
  /** Where a VJP finds its saved values and bound shapes: one object, refilled per task (a hot path). */
  private readonly vjpSource: KeptSource<T>;
  /**
   * Bytes of each node's value (NaN: not yet computed), per bindings object of the step's shards; the
   * tables themselves are kept across steps by the bindings' sizes (a few: the shard sizes).
   */
  private sizes = new Map<Bindings, Float64Array>();
  /** The table of each shard of the step, by replica * microbatches + mb (a task reads it without a map lookup). */
  private shardSizes: Float64Array[] = [];
  private readonly sizesByKey = new Map<string, Float64Array>();

  constructor(
    private readonly plan: Plan,
    private readonly engine: ValueEngine<T>,
    private readonly counters: HostStats,
    private readonly out: Outbox<T>,
    private readonly router: Router<T>,
    private readonly shardTables: ShardTables,
    private readonly flow: FlowControl,
  ) {
    this.vjpSource = new KeptSource<T>(plan.graph.columns.shapes);
  }

  /** Bytes of node `id`'s value in shard (replica, mb) of the step. */
  bytesOf(id: number, replica: number, mb: number): number {
    const sizes = this.shardSizes[replica * this.microbatches + mb]!;
    let b = sizes[id]!;
    if (Number.isNaN(b)) {
      // From the graph's columns: a node this host does not run is never made (Note [nodes on first read]).
      const graph = this.plan.graph;
      const shape = graph.columns.shapes[id]!;
      const bindings = this.bindings(replica, mb);
      b = bytesPerElement(graph.dtypeOf(id));
      for (let k = 0; k < shape.length; k++) {
        const d = shape[k]!;
        const v = typeof d === 'number' ? d : bindings.get(d);
        // Unbound: resolveShape's error names the node.
        if (v === undefined) resolveShape(shape, bindings, label(graph.nodeAt(id)));
        b *= v!;
      }
      sizes[id] = b;
    }
    return b;
  }

  /** Bytes a task makes: a forward's output, or the contributions of its part of the VJP. */
  outputBytes(task: Task<T>): number {
    const { actor, replica, mb, phase } = task;
    if (phase === 'forward') return task.value === undefined ? this.bytesOf(actor.node.id, replica, mb) : 0;
    if (actor.reportsGradient) return 0;
    const needs =
      phase === 'backward' ? actor.needs : phase === 'input' ? actor.needsInput : actor.needsWeight;
    let bytes = 0;
    for (let s = 0; s < needs.length; s++)
      if (needs[s]) bytes += this.bytesOf(actor.node.inputs[s]!, replica, mb);
    return bytes;
  }

  /** The step's shards (bindings and loss scales), for its tasks. */
  start(start: StepStart): void {
    this.microbatches = start.microbatches;
    const shards = this.shardTables.of(start);
    if (shards !== this.shards) {
      this.sizes = new Map();
      for (const shard of shards) {
        if (shard === undefined || this.sizes.has(shard.bindings)) continue;
        const key = JSON.stringify([...shard.bindings]);
        let sizes = this.sizesByKey.get(key);
        if (sizes === undefined) {
          if (this.sizesByKey.size >= 8) this.sizesByKey.clear();
          sizes = new Float64Array(this.plan.graph.size).fill(Number.NaN);
          this.sizesByKey.set(key, sizes);
        }
        this.sizes.set(shard.bindings, sizes);
      }
    }
    this.shards = shards;
    // A hole stays one: a task of a shard the step does not have fails as it did reading its bindings.
    this.shardSizes = shards.map((shard) => this.sizes.get(shard!.bindings)!);
    const training = start.outputs === undefined;
    this.training = training;
    this.reported = null;
    if (!training) {
      this.reported = new Uint8Array(this.plan.graph.size);
      for (const id of start.outputs!) this.reported[id] = 1;
    }
    this.runs = [];
    for (const s of start.shards) {
      this.runs[s.replica * start.microbatches + s.mb] = {
        step: training ? (start.trainingStep ?? start.step) : 0,
        microbatch: s.mb,
        replica: s.replica,
        training,
      };
    }
  }

  reset(): void {
    this.shards = [];
    this.runs = [];
    this.reported = null;
  }

  /** Runs a task of step `step`. */
  run(task: Task<T>, step: number, effects: HostEffect<T>[]): void {
    if (task.phase === 'forward') this.forward(task, step, effects);
    else this.backward(task, step, effects);
  }

  private bindings(replica: number, mb: number): Bindings {
    return this.shards[replica * this.microbatches + mb]!.bindings;
  }

  private runOf(replica: number, mb: number): RunContext {
    return this.runs[replica * this.microbatches + mb]!;
  }

  private forward(task: Task<T>, step: number, effects: HostEffect<T>[]): void {
    const { actor, mb, replica } = task;
    const node = actor.node;
    const engine = this.engine;
    let output: T;
    if (task.value !== undefined) output = task.value;
    else {
      output = engine.forward(
        node,
        actor.arguments(mb),
        this.bindings(replica, mb),
        this.runOf(replica, mb),
        actor.def,
      );
      // An inference step runs no backward: nothing is kept for one.
      const keeps = this.training && actor.runsVjp;
      actor.afterForward(mb, output, keeps);
      if (keeps) {
        const kept = actor.state(mb).kept;
        for (let k = 0; k < kept.length; k++) {
          engine.share(kept[k]!);
          if (actor.keptPerMicrobatch[k]) this.counters.keptBytes += engine.bytes(kept[k]!);
        }
        if (this.counters.keptBytes > this.counters.peakKeptBytes)
          this.counters.peakKeptBytes = this.counters.keptBytes;
      }
    }
    this.flow.forwardRan(replica, node.id, mb, step, effects);
    if (this.anomalies && engine.isFinite?.(output) === false)
      effects.push(this.anomaly(task, step, 'forward'));
    // A copy: consumers here may still read the value, and one elsewhere may take it.
    if (this.reported !== null && this.reported[node.id] === 1) {
      const tensor = this.out.copy(output);
      effects.push({ kind: 'report', report: { kind: 'output', step, mb, replica, node: node.id, tensor } });
    }
    if (node.id !== this.plan.loss || !this.training) {
      this.router.output(actor, mb, output, step, effects);
      return;
    }
    const shard = this.shards[replica * this.microbatches + mb]!;
    effects.push({
      kind: 'report',
      report: { kind: 'loss', step, mb, replica, value: engine.item(output) },
    });
    if (actor.runsVjp) {
      // Note [microbatch scaling]: the seed of a shard's loss is its share of the batch.
      actor.seed(mb, engine.ops.constant(shard.scale, node.dtype));
      this.router.queue.enqueue(actor, 'backward', mb);
    }
  }

  /**
   * A backward task: the whole VJP ('backward'), or one part of a split one ('input': the gradients
   * of activations; 'weight': the gradients of parameters, later). The parts run the same VJP with
   * complementary `needs`, so their contributions are the very ones the whole VJP would send.
   */
  private backward(task: Task<T>, step: number, effects: HostEffect<T>[]): void {
    const { actor, mb, replica, phase } = task;
    const node = actor.node;
    const state = actor.state(mb);
    const g = actor.cotangent(this.engine.ops, mb);
    if (actor.reportsGradient) {
      // Note [input gradients]: the sum of an input's contributions for this shard goes to the coordinator.
      const tensor = this.out.giveAway(g);
      actor.afterBackward(mb);
      effects.push({
        kind: 'report',
        report: { kind: 'inputGrad', step, mb, replica, node: node.id, tensor },
      });
      return;
    }
    const needs =
      phase === 'backward' ? actor.needs : phase === 'input' ? actor.needsInput : actor.needsWeight;
    const last = phase !== 'input' || !actor.hasWeightPart;
    let cotangents: readonly (T | null)[] = NO_COTANGENTS;
    if (needs.includes(true)) {
      const bindings = this.bindings(replica, mb);
      if (this.engine.contributions !== undefined)
        cotangents = this.engine.contributions(node, needs, bindings);
      else {
        this.vjpSource.fill(actor.keptIds, state.kept, bindings);
        cotangents = runVjp(this.engine.ops, node, g, needs, this.vjpSource, actor.def);
      }
    }
    if (this.anomalies && cotangents.some((c) => c !== null && this.engine.isFinite?.(c) === false)) {
      effects.push(this.anomaly(task, step, 'backward'));
    }
    if (last) {
      const kept = state.kept;
      for (let k = 0; k < kept.length; k++)
        if (actor.keptPerMicrobatch[k]) this.counters.keptBytes -= this.engine.bytes(kept[k]!);
      actor.afterBackward(mb);
    } else actor.holdCotangent(mb, g);
    // The cotangent the VJP read: a contribution that is its storage is not the contribution's alone.
    this.router.contributions(actor, mb, cotangents, step, effects, g);
  }

  private anomaly(task: Task<T>, step: number, phase: 'forward' | 'backward'): HostEffect<T> {
    const { node, mb, replica } = task;
    return { kind: 'report', report: { kind: 'anomaly', step, node, mb, replica, phase } };
  }
}

const NO_COTANGENTS: readonly null[] = [];

/** The report of a task that threw: the error as data, with where it happened. */
export function taskFailure<T>(err: unknown, task: Task<T>, worker: number, step: number): HostEffect<T> {
  const error = toWireError(err, {
    worker,
    node: label(task.actor.node),
    op: task.actor.node.op,
    step,
    microbatch: task.mb,
    replica: task.replica,
    phase: task.phase === 'forward' ? 'forward' : 'backward',
  });
  return { kind: 'report', report: { kind: 'failed', step, error } };
}
