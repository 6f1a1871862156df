import type { TaskInfo } from '../actor/host.ts';
import type { Node } from '../graph/graph.ts';
import type { TypeInfo } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import { edgeGradients, type Plan } from '../partition/plan.ts';
import { phaseOf, type Trace } from '../trace/trace.ts';
import {
  aloneMs,
  type Links,
  openLinks,
  type TransportKind,
  type TransportParams,
  transportParams,
} from './transport.ts';

/** How long things take in the simulator, in milliseconds. */
export interface CostModel {
  /** One task of a host (a node's forward, backward, input or weight part). */
  task(task: TaskInfo, node: Node): number;
  /** A message alone on its links, from send to receipt. */
  message(bytes: number, from: number, to: number): number;
  /**
   * Fresh links for one simulated step, where messages may wait for each other (Note [simulated
   * transports], `src/sim/transport.ts`). Without: every message takes `message`.
   */
  links?(): Links;
  /**
   * Core time the sending host spends on a message before it leaves, after the task that made it
   * (copying a value for another thread; Note [message chores], `src/sim/simulate.ts`). None: free.
   */
  send?(kind: MessageKind, bytes: number, from: number, to: number): number;
  /**
   * Core time the receiving host spends taking a message before it can run anything else (summing a
   * gradient contribution into its partial sum; Note [message chores]). None: free.
   */
  receive?(kind: MessageKind, bytes: number, to: number): number;
}

/** What a message between hosts carries: an input's feed, an activation, a parameter's value or a gradient. */
export type MessageKind = 'feed' | 'activation' | 'param' | 'gradient';

/** The wire between workers: a transport and what to change of its defaults (TRANSPORT_DEFAULTS). */
export interface LinkCost {
  /** Default 'threads': free communication unless latencyMs or bytesPerMs say otherwise. */
  transport?: TransportKind;
  /** Per-message latency of one hop (a NATS message takes two). */
  latencyMs?: number;
  /** Bytes per millisecond of one link (tcp) or of the broker (nats). */
  bytesPerMs?: number;
}

/** The transport `options` name and its parameters, with the options' in place of its defaults. */
export function linkParams(options: LinkCost): { kind: TransportKind; params: TransportParams } {
  const kind = options.transport ?? 'threads';
  const params = transportParams(kind, {
    latencyMs: options.latencyMs,
    mbPerS: options.bytesPerMs === undefined ? undefined : options.bytesPerMs / 1e3,
  });
  return { kind, params };
}

const link = (options: LinkCost): Pick<CostModel, 'message' | 'links'> => {
  const { kind, params } = linkParams(options);
  return { message: (bytes) => aloneMs(kind, params, bytes), links: () => openLinks(kind, params) };
};

/**
 * Equal stage costs: a stage's forward of one microbatch takes `forward` ms, and so on for the
 * backward (or its input and weight parts). The whole cost is charged to one task of the stage (its
 * last node doing that part), the others cost nothing: sums stay exact, as the closed forms need.
 */
export function stageCosts(
  plan: Plan,
  costs: { forward: number; backward: number; input?: number; weight?: number } & LinkCost,
): CostModel {
  // The anchor node of each stage per part, by stage (-1: none); read once per simulated task.
  let stages = 0;
  for (const s of plan.stageOf) stages = Math.max(stages, s + 1);
  const anchor = {
    forward: new Int32Array(stages).fill(-1),
    backward: new Int32Array(stages).fill(-1),
    weight: new Int32Array(stages).fill(-1),
  };
  const carriesGradient = edgeGradients(plan);
  for (const node of plan.graph.nodes) {
    const s = plan.stageOf[node.id]!;
    if (s < 0 || node.op === 'param' || node.op === 'const') continue;
    anchor.forward[s] = node.id;
    const grads = node.inputs.map((_, slot) => carriesGradient(node.id, slot));
    if (grads.includes(true)) anchor.backward[s] = node.id;
    if (grads.some((g, slot) => g && plan.graph.opOf(node.inputs[slot]!) === 'param'))
      anchor.weight[s] = node.id;
  }
  const input = costs.input ?? costs.backward / 2;
  const weight = costs.weight ?? costs.backward - input;
  return {
    task(task) {
      const phase = task.phase === 'input' ? 'backward' : task.phase;
      if (anchor[phase][task.stage] !== task.node) return 0;
      return task.phase === 'forward'
        ? costs.forward
        : task.phase === 'backward'
          ? costs.backward
          : task.phase === 'input'
            ? input
            : weight;
    },
    ...link(costs),
  };
}

/** Costs from FLOP estimates: each op's `flops` at the shard's batch size over a FLOP rate. */
export function flopCosts(
  plan: Plan,
  options: { gflops?: number; overheadMs?: number; batchSize: number } & LinkCost,
): CostModel {
  const rate = (options.gflops ?? 4) * 1e6; // FLOP per ms
  const overhead = options.overheadMs ?? 0.002;
  const flops = new Map<number, number>();
  const concrete = (shape: readonly (number | string)[]) =>
    shape.map((d) => (typeof d === 'number' ? d : options.batchSize));
  for (const node of plan.graph.nodes) {
    if (node.inputs.length === 0) continue;
    const infos: TypeInfo[] = node.inputs.map((i) => ({
      shape: concrete(plan.graph.nodeAt(i).shape),
      dtype: plan.graph.nodeAt(i).dtype,
    }));
    const def = getOp(node.op);
    flops.set(
      node.id,
      def.flops?.(infos, { shape: concrete(node.shape), dtype: node.dtype }, node.attrs) ?? 0,
    );
  }
  return {
    task(task, node) {
      const f = flops.get(node.id) ?? 0;
      // A VJP costs about twice its forward; each part of a split one about half of that.
      const factor = task.phase === 'forward' ? 1 : task.phase === 'backward' ? 2 : 1;
      return overhead + (f * factor) / rate;
    },
    ...link(options),
  };
}

/**
 * Costs measured in a real run: the mean duration of each (node, phase) in its trace (task spans, not
 * coalesced), or with `statistic: 'median'` the median, which a few stalled tasks (a collection, a
 * descheduled thread on a shared machine) do not move. Tasks the trace never saw cost `fallback`.
 */
export function traceCosts(
  trace: Trace,
  options: LinkCost & { fallbackMs?: number; statistic?: 'mean' | 'median' } = {},
): CostModel {
  const durations = new Map<string, number[]>();
  for (const s of trace.spans) {
    if (s.node === undefined) continue;
    const key = `${s.node}:${s.phase}`;
    const list = durations.get(key) ?? [];
    list.push(s.end - s.start);
    durations.set(key, list);
  }
  const costs = new Map<string, number>();
  for (const [key, list] of durations) {
    if (options.statistic === 'median') {
      list.sort((a, b) => a - b);
      const mid = list.length >> 1;
      costs.set(key, list.length % 2 === 1 ? list[mid]! : (list[mid - 1]! + list[mid]!) / 2);
    } else costs.set(key, list.reduce((a, b) => a + b, 0) / list.length);
  }
  const fallback = options.fallbackMs ?? 0;
  return {
    task(task) {
      return costs.get(`${task.node}:${phaseOf(task.phase)}`) ?? fallback;
    },
    ...link(options),
  };
}
