import type { Message } from '../actor/host.ts';
import type { StepStart } from '../actor/messages.ts';
import { ancestors, type TensorMap } from '../autodiff/forward.ts';
import { type BatchShard, joinShardGradients, splitBatch } from '../autodiff/microbatch.ts';
import { InputError } from '../errors.ts';
import { label, type Node, type NodeRef } from '../graph/graph.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';
import { feedMessages, type StepRules, stepStart } from './step.ts';

// Note [inference steps]
// An inference step runs the plan's forward only, in evaluation mode (dropout is the identity), on
// the hosts that hold the parameters: a trained model's predictions need no copy of them. Its step
// start names the nodes whose values it wants (`StepStart.outputs`). Each host then runs its ready
// tasks in dataflow order whatever its schedule (an F action would wait for tasks that never run:
// the loss, without its labels), keeps nothing for a backward, expects no gradient, and every
// actor of a named node reports a copy of its value per shard (`output`). Only the inputs the
// outputs depend on are fed; actors that need another one never fire, and the next step start
// forgets them. The coordinator lays each output's shards back in batch order: the values are
// `evaluate`'s on each shard, so with several shards an output must have the batch dimension
// first. Only what the plan places can be asked for: the nodes the loss depends on.

/** Options of `runtime.infer`. */
export interface InferOptions {
  /** What to return, by name (default: every output of the graph but the loss). */
  outputs?: readonly NodeRef[];
}

/** An inference, checked before it starts: what it feeds, cuts and asks for. */
export interface InferRequest {
  /** The requested nodes and the names they are returned under. */
  readonly outputs: readonly (readonly [string, Node])[];
  readonly inputs: readonly Node[];
  readonly shards: readonly BatchShard[];
}

/** Checks an inference's feeds and outputs against the plan (InputError) and cuts the batch. */
export function inferRequest(rules: StepRules, feeds: TensorMap, options: InferOptions): InferRequest {
  const { plan, microbatches } = rules;
  const graph = plan.graph;
  const refs =
    options.outputs ?? Object.keys(graph.outputs).filter((name) => graph.outputs[name] !== plan.loss);
  if (!Array.isArray(refs) || refs.length === 0) {
    throw new InputError('infer: no outputs to compute: name them (options.outputs)', {
      expected: 'one or more nodes',
      found: refs,
    });
  }
  const outputs = refs.map((ref): [string, Node] => {
    const node = graph.node(ref);
    const name = typeof ref === 'string' ? ref : label(node);
    if (node.op === 'param' || node.op === 'const' || plan.placement[0]![node.id]! < 0) {
      const why =
        node.op === 'param'
          ? 'a parameter (getParams reads it)'
          : node.op === 'const'
            ? 'a constant'
            : 'not computed by the plan, which places only what the loss depends on (predict() evaluates any node in this thread)';
      throw new InputError(`infer: output '${name}' is ${why}`, { node: name, found: node.op });
    }
    return [name, node];
  });
  const needed = ancestors(
    graph,
    outputs.map(([, n]) => n.id),
  );
  const inputs = graph.inputs().filter((n) => needed[n.id] === 1);
  const shards = splitBatch(graph, feeds, { replicas: plan.replicas, microbatches, inputs });
  if (shards.length > 1) {
    for (const [name, node] of outputs) {
      if (typeof node.shape[0] !== 'string') {
        throw new InputError(
          `infer: output '${name}' has shape [${node.shape.join(',')}]: with ${shards.length} shards an output needs the batch dimension first (Note [inference steps])`,
          { node: name, expected: 'a batch dimension first', found: node.shape },
        );
      }
    }
  }
  return { outputs, inputs, shards };
}

/** The step start of an inference, and the feeds of its input actors by worker. */
export function inferMessages(
  rules: StepRules,
  request: InferRequest,
  step: number,
): { start: StepStart; feeds: Map<number, Message[]> } {
  const start = stepStart(step, rules.microbatches, request.shards, 0);
  return {
    start: { ...start, outputs: request.outputs.map(([, n]) => n.id) },
    feeds: feedMessages(rules, step, request.shards, request.inputs),
  };
}

/** An inference in flight: the values reported so far, one per output and shard. */
export class Inference {
  private readonly parts: (Tensor | undefined)[][];
  private missing: number;

  constructor(
    readonly step: number,
    private readonly request: InferRequest,
    private readonly microbatches: number,
    readonly resolve: (values: Record<string, Tensor>) => void,
    readonly reject: (error: Error) => void,
  ) {
    const shards = request.shards.length;
    this.parts = request.outputs.map(() => new Array<Tensor | undefined>(shards).fill(undefined));
    this.missing = request.outputs.length * shards;
  }

  /** A host's value of node `node` for a shard; the last one resolves (a second one is a duplicate). */
  receive(mb: number, replica: number, node: number, tensor: Tensor): void {
    const k = replica * this.microbatches + mb;
    this.request.outputs.forEach(([, n], i) => {
      if (n.id !== node || this.parts[i]![k] !== undefined) return;
      this.parts[i]![k] = tensor;
      this.missing--;
    });
    if (this.missing === 0) this.resolve(this.values());
  }

  /** Each output with its shards in batch order (Note [inference steps]). */
  private values(): Record<string, Tensor> {
    const out = dict<Tensor>();
    this.request.outputs.forEach(([name, node], i) => {
      const parts = this.parts[i] as Tensor[];
      out[name] = parts.length === 1 ? parts[0]! : joinShardGradients(node, parts, this.microbatches);
    });
    return out;
  }
}
