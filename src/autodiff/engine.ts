import { fmtShape, GradientError, ShapeError } from '../errors.ts';
import { INPUT } from '../graph/columns.ts';
import { type Graph, label, type Node, type NodeRef } from '../graph/graph.ts';
import { EagerOps } from '../ops/eager.ts';
import { EVAL_RUN, type RunContext } from '../ops/op.ts';
import { type ConcreteShape, shapesEqual } from '../tensor/shape.ts';
import { scalar, type Tensor, zeros } from '../tensor/tensor.ts';
import { dict, own } from '../util/names.ts';
import { sweep } from './backprop.ts';
import { withCallPool } from './call-pool.ts';
import { ancestors, bindFeeds, computeNode, paramValue, resolveShape, type TensorMap } from './forward.ts';
import { KeptValues } from './kept.ts';
import { edgeFacts, type GradPlan, planGradient, warnDisconnected } from './plan.ts';

const ops = new EagerOps();

/** Live tensor bytes held by an engine run, and their peak. */
class Meter {
  live = 0;
  peak = 0;
  add(t: Tensor): void {
    this.live += t.bytes;
    if (this.live > this.peak) this.peak = this.live;
  }
  drop(t: Tensor): void {
    this.live -= t.bytes;
  }
  dropBytes(bytes: number): void {
    this.live -= bytes;
  }
}

/** A node's value in a forward: its tensor, its place in a KeptValues (Note [kept values]), or none. */
type Slot = Tensor | number | undefined;

/**
 * Runs the forward over the nodes of `table` (its mask), in order. A value is freed as soon as no
 * later node reads it and `keep` (counts held for the backward, or outputs) does not hold it; one
 * that `keep` holds goes to `kept` then, when it takes it (Note [kept values]). The values no
 * later node reads (the outputs) are always tensors.
 */
function runForward(
  graph: Graph,
  table: ForwardTable,
  feeds: TensorMap,
  params: TensorMap,
  keep: Int32Array,
  meter: Meter,
  run: RunContext,
  kept: KeptValues | null = null,
) {
  // Node objects only for leaves (which a graph keeps); a computed node is read from the columns.
  const read = graph.reader();
  const defs = graph.defs;
  const { inputStart, inputIds, shapes } = graph.columns;
  const n = graph.size;
  const mask = table.mask;
  // Counted down as readers run: a copy per call.
  const uses = table.uses.slice();
  const bindings = bindFeeds(table.inputs, feeds);
  const values: Slot[] = new Array(n);
  // One argument array per arity, filled in place: setting an array's length is a runtime call.
  const argsOf: Tensor[][] = [];
  for (let id = 0; id < n; id++) {
    if (mask[id] === 0) continue;
    const def = defs[id];
    const start = inputStart[id]!;
    const end = inputStart[id + 1]!;
    let value: Tensor;
    if (def === undefined) value = leafValue(graph.nodeAt(id), feeds, params);
    else {
      const args = (argsOf[end - start] ??= new Array<Tensor>(end - start));
      for (let e = start; e < end; e++) args[e - start] = values[inputIds[e]!] as Tensor;
      value = computeNode(read(id), args, bindings, run, def);
    }
    values[id] = value;
    meter.add(value);
    // Only now, with the output live alongside them, the inputs no later node reads are freed.
    for (let e = start; e < end; e++) {
      const i = inputIds[e]!;
      const v = values[i];
      if (--uses[i]! !== 0 || v === undefined || typeof v === 'number') continue;
      if (keep[i] === 0) {
        meter.drop(v);
        values[i] = undefined;
      } else if (kept !== null && defs[i] !== undefined) {
        const place = kept.put(v, shapes[i]!);
        if (place >= 0) values[i] = place;
      }
    }
  }
  return { values, bindings };
}

/** A forward mask, how many computed nodes read each node, and the inputs to bind. */
interface ForwardTable {
  readonly mask: Uint8Array;
  readonly uses: Int32Array;
  readonly inputs: readonly Node[];
}

/** Counts the readers of a forward mask: valueAndGrad counts once and runs the same mask every call. */
function forwardTable(graph: Graph, mask: Uint8Array): ForwardTable {
  const { inputStart, inputIds, kinds } = graph.columns;
  const uses = new Int32Array(graph.size);
  const inputs: Node[] = [];
  for (let id = 0; id < graph.size; id++) {
    if (mask[id] === 0) continue;
    if (kinds[id] === INPUT) inputs.push(graph.nodeAt(id));
    for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) uses[inputIds[e]!]!++;
  }
  return { mask, uses, inputs };
}

function leafValue(node: Node, feeds: TensorMap, params: TensorMap): Tensor {
  if (node.op === 'input') return own(feeds, node.name!)!;
  if (node.op === 'param') return paramValue(node, params);
  return node.attrs.value as Tensor;
}

/**
 * Evaluates a graph: the named outputs (all of them by default), computing only the nodes they need.
 * It runs in evaluation mode (dropout is the identity) unless `run` says otherwise (Note [run
 * context] in src/ops/step-key.ts).
 */
export function evaluate(
  graph: Graph,
  feeds: TensorMap,
  params: TensorMap = {},
  outputs?: readonly NodeRef[],
  run: RunContext = EVAL_RUN,
): Record<string, Tensor> {
  const wanted: [string, number][] = outputs
    ? outputs.map((r) => {
        const node = graph.node(r);
        return [typeof r === 'string' ? r : label(node), node.id];
      })
    : Object.entries(graph.outputs);
  const roots = wanted.map(([, id]) => id);
  const keep = new Int32Array(graph.size);
  for (const id of roots) keep[id] = 1;
  const table = forwardTable(graph, ancestors(graph, roots));
  return withCallPool(
    () => {
      const { values } = runForward(graph, table, feeds, params, keep, new Meter(), run);
      return Object.fromEntries(wanted.map(([name, id]) => [name, values[id] as Tensor]));
    },
    (out) => Object.values(out),
  );
}

/** What `valueAndGrad` differentiates: the loss, and with respect to what. */
export interface ValueAndGradOptions {
  /** The scalar to differentiate (or a non-scalar one, with a seed given at each call). */
  loss: NodeRef;
  /** What to differentiate with respect to; by default every parameter. */
  wrt?: readonly NodeRef[];
  /** Where warnings go (a parameter not connected to the loss); default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

/** What a `valueAndGrad` function returns for one call. */
export interface ValueAndGradResult {
  /** The loss. */
  value: Tensor;
  /** One gradient per `wrt` node, keyed by its name (or %id). */
  grads: Record<string, Tensor>;
  /** The peak of live tensor bytes the engine held during the call. */
  peakBytes: number;
}

type CallOptions = NonNullable<Parameters<ValueAndGradFn>[2]>;

/** A training step with one shard, the runtime's first: what valueAndGrad runs in unless told. */
export const TRAINING_RUN: RunContext = Object.freeze({ step: 1, microbatch: 0, replica: 0, training: true });

/**
 * The function `valueAndGrad` returns: the loss and the gradients for given feeds and parameters
 * (and a seed for a non-scalar loss).
 */
export type ValueAndGradFn = (
  feeds: TensorMap,
  params?: TensorMap,
  options?: {
    seed?: Tensor;
    /** The step and shard random ops key their draws with (Note [run context]); default TRAINING_RUN. */
    run?: RunContext;
  },
) => ValueAndGradResult;

/**
 * The reference engine: `valueAndGrad(graph, {loss, wrt})` returns a function computing the loss and
 * its gradients by the textbook algorithm (forward in topological order, then the reverse sweep of
 * `sweep` with the gradient table). Only the needed subgraph is computed, and each saved value is
 * freed as soon as the last VJP that reads it has run.
 */
export function valueAndGrad(graph: Graph, options: ValueAndGradOptions): ValueAndGradFn {
  const wrt = options.wrt ?? graph.params();
  const plan = planGradient(graph, options.loss, wrt);
  warnDisconnected(graph, plan, options.onWarning);
  const keep = savedCounts(graph, plan);
  const forward = forwardTable(graph, plan.forward);
  const { inputStart, inputIds, shapes } = graph.columns;
  const { saved, savesOutput } = edgeFacts(graph);
  // Note [call storages]: in the main thread, what a call makes and does not return is recycled.
  return (feeds, params = {}, callOptions = {}) =>
    withCallPool(
      () => call(feeds, params, callOptions),
      (r) => [r.value, ...Object.values(r.grads)],
    );

  function call(feeds: TensorMap, params: TensorMap, callOptions: CallOptions): ValueAndGradResult {
    const meter = new Meter();
    const held = keep.slice();
    held[plan.loss]!++;
    const run = callOptions.run ?? TRAINING_RUN;
    const kept = new KeptValues();
    const { values, bindings } = runForward(graph, forward, feeds, params, held, meter, run, kept);
    const lossNode = graph.nodeAt(plan.loss);
    // No node of the forward reads the loss: it is a tensor.
    const value = values[plan.loss] as Tensor;
    const seed = seedFor(lossNode.op, label(lossNode), value, callOptions.seed);
    const release = (i: number) => {
      const v = values[i];
      if (--held[i]! !== 0 || v === undefined) return;
      if (typeof v === 'number') meter.dropBytes(kept.bytes(v, shapes[i] as ConcreteShape));
      else meter.drop(v);
      values[i] = undefined;
    };
    const grads = sweep(graph, plan, ops, seed, {
      shape: (id) =>
        bindings.size === 0 ? shapes[id]! : resolveShape(shapes[id]!, bindings, graph.nameOf(id) ?? `%${id}`),
      primal: (id) => {
        const v = values[id];
        return typeof v === 'number' ? kept.get(v, shapes[id] as ConcreteShape) : v!;
      },
      held: (t, sign) => (sign === 1 ? meter.add(t) : meter.drop(t)),
      visited: (id) => {
        for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) if (saved[e] === 1) release(inputIds[e]!);
        if (savesOutput[id] === 1) release(id);
      },
    });
    const out = dict<Tensor>();
    for (const id of plan.wrt) {
      const node = graph.nodeAt(id);
      // A zero gradient has its node's shape; an input the loss does not read takes its feed's.
      const fed = node.op === 'input' ? own(feeds, node.name!) : undefined;
      out[label(node)] =
        grads.get(id) ??
        zeros(
          fed !== undefined ? [...fed.shape] : resolveShape(node.shape, bindings, label(node)),
          node.dtype,
        );
    }
    return { value, grads: out, peakBytes: meter.peak };
  }
}

/** How many VJPs will read each node's value: what the forward must keep for the backward. */
function savedCounts(graph: Graph, plan: GradPlan): Int32Array {
  const keep = new Int32Array(graph.size);
  const defs = graph.defs;
  const { inputStart, inputIds } = graph.columns;
  const { carries, saved, savesOutput } = edgeFacts(graph);
  for (let id = 0; id <= plan.loss; id++) {
    if (plan.needsGrad[id] === 0 || defs[id] === undefined) continue;
    const base = inputStart[id]!;
    const end = inputStart[id + 1]!;
    let runs = false;
    for (let e = base; e < end && !runs; e++) runs = plan.needsGrad[inputIds[e]!] === 1 && carries[e] === 1;
    if (!runs) continue;
    for (let e = base; e < end; e++) if (saved[e] === 1) keep[inputIds[e]!]!++;
    if (savesOutput[id] === 1) keep[id]!++;
  }
  return keep;
}

function seedFor(op: string, name: string, value: Tensor, seed: Tensor | undefined): Tensor {
  if (seed === undefined) {
    if (value.rank !== 0) {
      throw new GradientError(
        `loss ${name} (${op}) has shape ${fmtShape(value.shape)}: a non-scalar output needs an explicit seed gradient of that shape`,
        { node: name, expected: 'a scalar loss or a seed', found: value.shape },
      );
    }
    return scalar(1, value.dtype);
  }
  if (seed.dtype !== value.dtype || !shapesEqual(seed.shape, value.shape)) {
    throw new ShapeError(
      `seed for ${name}: expected ${value.dtype}${fmtShape(value.shape)}, found ${seed.dtype}${fmtShape(seed.shape)}`,
      {
        node: name,
        expected: value.shape,
        found: seed.shape,
      },
    );
  }
  return seed;
}
