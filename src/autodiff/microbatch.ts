import { InputError } from '../errors.ts';
import type { Graph, Node, NodeRef } from '../graph/graph.ts';
import { eager } from '../ops/eager.ts';
import { allocate, type DType, type Storage, scalar, Tensor } from '../tensor/tensor.ts';
import { dict, own } from '../util/names.ts';
import { valueAndGrad } from './engine.ts';
import { bindFeeds, checkFeedNames, type TensorMap } from './forward.ts';

// Note [microbatch scaling]
// A step's batch of B examples is cut into shards: `replicas` contiguous parts, each cut into
// `microbatches` contiguous microbatches (sizes differ by at most one). A loss that is a mean over
// its shard is seeded with (shard size / B) instead of 1, so the sum of the shards' gradients is the
// gradient of the mean over the whole batch, and the sum of their scaled losses is the batch's mean
// loss. This rule lives here, once: the coordinator's shards and the reference below both come from
// `splitBatch`.

/**
 * One shard of a batch, as `splitBatch` cuts it and the runtime runs it: a (replica, microbatch)
 * and its rows.
 */
export interface BatchShard {
  /** The replica it runs on. */
  readonly replica: number;
  /** The microbatch. */
  readonly mb: number;
  /** Its first row in the batch. */
  readonly start: number;
  /** Its number of rows. */
  readonly size: number;
  /** The feeds cut to its rows (inputs without the batch dimension whole). */
  readonly feeds: Record<string, Tensor>;
  /** The symbolic dimensions bound for it (the batch dimension to `size`). */
  readonly bindings: ReadonlyMap<string, number>;
  /** The shard's share of the batch: its loss seed. */
  readonly scale: number;
}

/** How a batch is cut: replicas x microbatches shards. */
export interface SplitOptions {
  /** Data-parallel replicas (default 1). */
  replicas?: number;
  /** Microbatches per replica (default 1). */
  microbatches?: number;
  /** The inputs fed and cut (default: every input of the graph). */
  inputs?: readonly Node[];
  /**
   * Where each shard's copy of an input is made (default: a fresh zero-filled storage): the
   * runtime's feed storages (Note [feed storages] in src/runtime/feed-storage.ts), keyed by the
   * input's place in `inputs` and the shard's index. Every element is written.
   */
  storage?: ShardStorage | undefined;
}

/** Where splitBatch makes a shard's copy of an input: by place (shard x input), dtype and size. */
export type ShardStorage = (key: number, dtype: DType, size: number) => Storage;

/** The sizes of `shards` contiguous shards of a batch: as equal as possible, the larger ones first. */
export function shardSizes(batch: number, shards: number): number[] {
  return Array.from({ length: shards }, (_, k) => Math.floor(batch / shards) + (k < batch % shards ? 1 : 0));
}

/** Where one shard sits in the batch (Note [microbatch scaling]). */
export interface ShardPlace {
  readonly replica: number;
  readonly mb: number;
  /** Its first row in the batch. */
  readonly start: number;
  readonly size: number;
  /** The shard's share of the batch: its loss seed. */
  readonly scale: number;
}

/**
 * How a batch of `batch` rows is cut into replicas x microbatches shards, and the batch symbol the
 * inputs share (undefined when none has one), checked: the rule of Note [microbatch scaling], for
 * `splitBatch` and the simulator alike.
 */
export function shardLayout(
  graph: Graph,
  batch: number | ((symbol: string) => number),
  options: SplitOptions = {},
): { symbol: string | undefined; shards: ShardPlace[] } {
  const replicas = options.replicas ?? 1;
  const microbatches = options.microbatches ?? 1;
  for (const [k, v] of [
    ['replicas', replicas],
    ['microbatches', microbatches],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new InputError(`${k}: expected an integer >= 1, found ${v}`, { expected: '>= 1', found: v });
  }
  const inputs = options.inputs ?? graph.inputs();
  const batchSymbols = new Set(
    inputs.map((n) => n.shape[0]).filter((d): d is string => typeof d === 'string'),
  );
  if (batchSymbols.size > 1) {
    throw new InputError(`inputs disagree on the batch dimension (${[...batchSymbols].join(', ')})`, {
      found: [...batchSymbols],
    });
  }
  const symbol = [...batchSymbols][0];
  const count = replicas * microbatches;
  const rowsOf = symbol === undefined ? 1 : typeof batch === 'number' ? batch : batch(symbol);
  if (count > 1 && symbol === undefined) {
    throw new InputError(`${count} shards asked, but no input has a symbolic batch dimension to split`, {
      expected: 'an input whose first dimension is a symbol such as B',
      found: inputs.map((n) => n.shape),
    });
  }
  if (rowsOf < count) {
    throw new InputError(
      `a batch of ${rowsOf} cannot be cut into ${replicas} replicas x ${microbatches} microbatches`,
      {
        expected: `batch size >= ${count}`,
        found: rowsOf,
      },
    );
  }
  const shards: ShardPlace[] = [];
  let start = 0;
  for (const [k, size] of shardSizes(rowsOf, count).entries()) {
    shards.push({
      replica: Math.floor(k / microbatches),
      mb: k % microbatches,
      start,
      size,
      scale: size / rowsOf,
    });
    start += size;
  }
  return { symbol, shards };
}

/**
 * Cuts a batch of feeds into replicas x microbatches shards along the batch dimension: the symbolic
 * leading dimension shared by the batched inputs. Inputs without it go whole to every shard (copied,
 * so every shard owns its tensors). Every input must be fed, and every feed must be an input.
 */
export function splitBatch(graph: Graph, feeds: TensorMap, options: SplitOptions = {}): BatchShard[] {
  const inputs = options.inputs ?? graph.inputs();
  checkFeedNames(graph.inputs(), feeds);
  const bindings = bindFeeds(inputs, feeds);
  const { symbol, shards } = shardLayout(graph, (s) => bindings.get(s)!, options);
  const storage = options.storage ?? ((_: number, dtype: DType, size: number) => allocate(dtype, size));
  return shards.map((place, k) => {
    const shardFeeds = dict<Tensor>();
    for (const [i, node] of inputs.entries()) {
      const t = own(feeds, node.name!)!;
      const make = (dtype: DType, size: number) => storage(k * inputs.length + i, dtype, size);
      shardFeeds[node.name!] =
        symbol !== undefined && node.shape[0] === symbol
          ? rows(t, place.start, place.size, make)
          : rows(t, 0, t.shape[0] ?? 1, make, true);
    }
    const b = new Map(bindings);
    if (symbol !== undefined) b.set(symbol, place.size);
    return { ...place, feeds: shardFeeds, bindings: b };
  });
}

/** Rows [start, start + count) of a tensor as a new owned tensor (a scalar is copied whole) in `make`'s storage. */
function rows(
  t: Tensor,
  start: number,
  count: number,
  make: (dtype: DType, size: number) => Storage,
  whole = false,
): Tensor {
  if (whole || t.rank === 0) {
    const data = make(t.dtype, t.size);
    data.set(t.data);
    return new Tensor(t.dtype, t.shape, data);
  }
  const row = t.size / t.shape[0]!;
  const data = make(t.dtype, count * row);
  data.set(t.data.subarray(start * row, (start + count) * row));
  return new Tensor(t.dtype, [count, ...t.shape.slice(1)], data);
}

// Note [input gradients]
// The gradient of an input named in `wrt` (a saliency map, an adversarial example) is not summed like
// a parameter's: every shard's rows have their own. An input with the batch dimension gets its
// shards' gradients laid back in batch order; an input fed whole to every shard gets the sum of its
// shards' gradients in the order of Note [gradient sum order] (microbatches, then replicas), as a
// parameter would. On the runtime, an input's actor sums its contributions for a shard (Note
// [canonical sum order]) and reports them; the coordinator joins the shards here, as the reference
// below does, so the two agree bit for bit.

/** True when an input is cut along the batch (its first dimension is the batch symbol). */
export function isBatched(node: Node): boolean {
  return typeof node.shape[0] === 'string';
}

/**
 * An input's gradient from its shards' gradients, given in shard order (replica by replica,
 * microbatch by microbatch): Note [input gradients].
 */
export function joinShardGradients(node: Node, parts: readonly Tensor[], microbatches: number): Tensor {
  if (isBatched(node)) {
    const first = parts[0]!;
    const rowShape = first.shape.slice(1);
    const row = rowShape.reduce((p, d) => p * d, 1);
    let rowsTotal = 0;
    for (const t of parts) rowsTotal += t.shape[0]!;
    const data = allocate(first.dtype, rowsTotal * row);
    let at = 0;
    for (const t of parts) {
      data.set(t.data, at);
      at += t.size;
    }
    return new Tensor(first.dtype, [rowsTotal, ...rowShape], data);
  }
  let total: Tensor | null = null;
  for (let r = 0; r * microbatches < parts.length; r++) {
    let partial = parts[r * microbatches]!;
    for (let m = 1; m < microbatches; m++) partial = eager.add(partial, parts[r * microbatches + m]!);
    total = total === null ? partial : eager.add(total, partial);
  }
  return total!;
}

/** `referenceStep`'s result: what the runtime's step must equal bit for bit. */
export interface ReferenceStepResult {
  /** The batch's loss: sum over replicas of sum over microbatches of (shard loss x scale). */
  loss: number;
  /** The gradients by name, summed replica by replica, microbatch by microbatch. */
  grads: Record<string, Tensor>;
}

/**
 * The oracle for a distributed step: the reference engine run on each shard with its seed, the
 * gradients summed replica by replica, microbatch by microbatch (Note [gradient sum order] in
 * src/actor/param-actor.ts), each shard in its run context (Note [run context] in
 * src/ops/step-key.ts): training step `step` (default 1, the runtime's first), its microbatch and
 * replica. The actor runtime must give these numbers bit for bit.
 */
export function referenceStep(
  graph: Graph,
  feeds: TensorMap,
  params: TensorMap,
  options: SplitOptions & { loss?: NodeRef; wrt?: readonly NodeRef[]; step?: number } = {},
): ReferenceStepResult {
  const fn = valueAndGrad(graph, {
    loss: options.loss ?? 'loss',
    ...(options.wrt ? { wrt: options.wrt } : {}),
    onWarning: () => {},
  });
  const shards = splitBatch(graph, feeds, options);
  const microbatches = options.microbatches ?? 1;
  // Batched inputs in wrt: one gradient per shard, joined at the end (Note [input gradients]).
  const batched = (options.wrt ?? [])
    .map((r) => graph.node(r))
    .filter((n) => n.op === 'input' && isBatched(n));
  const parts = new Map<string, Tensor[]>(batched.map((n) => [n.name!, []]));
  let loss = 0;
  let total: Record<string, Tensor> | null = null;
  for (let r = 0; r < (options.replicas ?? 1); r++) {
    let lossR = 0;
    let partial: Record<string, Tensor> | null = null;
    for (let m = 0; m < microbatches; m++) {
      const shard = shards[r * microbatches + m]!;
      const lossDtype: DType = graph.node(options.loss ?? 'loss').dtype;
      const { value, grads } = fn(shard.feeds, params, {
        seed: scalar(shard.scale, lossDtype),
        run: { step: options.step ?? 1, microbatch: m, replica: r, training: true },
      });
      for (const [name, list] of parts) {
        list.push(grads[name]!);
        delete grads[name];
      }
      lossR += value.item() * shard.scale;
      partial = partial === null ? grads : addAll(partial, grads);
    }
    loss += lossR;
    total = total === null ? partial! : addAll(total, partial!);
  }
  for (const node of batched)
    total![node.name!] = joinShardGradients(node, parts.get(node.name!)!, microbatches);
  return { loss, grads: total! };
}

function addAll(a: Record<string, Tensor>, b: Record<string, Tensor>): Record<string, Tensor> {
  const out = dict<Tensor>();
  for (const k of Object.keys(a)) out[k] = eager.add(a[k]!, own(b, k)!);
  return out;
}
