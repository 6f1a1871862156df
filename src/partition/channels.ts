// The channels of a plan: which stage's activations travel to which other worker, and who reads
// them there. Flow control counts credits per channel (Note [activation credits] in
// src/actor/flow-control.ts); the memory estimate bounds what waits at a channel's end.
import { CONST, PARAM } from '../graph/columns.ts';
import type { Plan } from './plan.ts';

/** The activations one stage of one replica sends to one other worker, once per microbatch. */
export interface Channel {
  readonly replica: number;
  readonly stage: number;
  readonly from: number;
  readonly to: number;
  /** The nodes whose values travel on it (each once per microbatch), by id. */
  readonly nodes: readonly number[];
  /** The nodes on `to` that read them: a microbatch is consumed when each of these ran its forward. */
  readonly readers: readonly number[];
}

/**
 * Whether node `id`'s value travels as activations: a computed node other than a parameter (sent once
 * per step) or a constant (inlined in its consumers).
 */
function sendsActivations(plan: Plan, id: number, replica: number): boolean {
  const kind = plan.graph.columns.kinds[id]!;
  return kind !== PARAM && kind !== CONST && plan.placement[replica]![id]! >= 0;
}

/**
 * Writes into `out` the workers other than its own that read node `id`'s value in `replica`, each
 * once, and returns how many (`out` is a scratch array: no allocation per node on a million-node plan).
 */
export function sinkWorkers(plan: Plan, id: number, replica: number, out: number[]): number {
  const p = plan.placement[replica]!;
  if (!sendsActivations(plan, id, replica)) return 0;
  const { start, node } = plan.consumerEdges;
  let n = 0;
  for (let e = start[id]!; e < start[id + 1]!; e++) {
    const w = p[node[e]!]!;
    if (w === p[id]) continue;
    let seen = false;
    for (let j = 0; j < n && !seen; j++) seen = out[j] === w;
    if (!seen) out[n++] = w;
  }
  return n;
}

/** Writes into `out` the stages on other workers whose activations node `id` reads in `replica`, each once; returns how many. */
export function sourceStages(plan: Plan, id: number, replica: number, out: number[]): number {
  const p = plan.placement[replica]!;
  const { inputStart, inputIds } = plan.graph.columns;
  let n = 0;
  for (let k = inputStart[id]!; k < inputStart[id + 1]!; k++) {
    const input = inputIds[k]!;
    if (p[input] === p[id] || !sendsActivations(plan, input, replica)) continue;
    const stage = plan.stageOf[input]!;
    let seen = false;
    for (let j = 0; j < n && !seen; j++) seen = out[j] === stage;
    if (!seen) out[n++] = stage;
  }
  return n;
}

/** Every channel of the plan, by replica, then stage, then receiving worker. */
export function channels(plan: Plan): Channel[] {
  type Building = Omit<Channel, 'readers'> & { nodes: number[]; readers: Set<number> };
  const byKey = new Map<number, Building>();
  const { graph, placement } = plan;
  const sinks: number[] = [];
  for (let r = 0; r < plan.replicas; r++) {
    const p = placement[r]!;
    for (const node of graph.nodes) {
      const n = sinkWorkers(plan, node.id, r, sinks);
      for (let k = 0; k < n; k++) {
        const to = sinks[k]!;
        const stage = plan.stageOf[node.id]!;
        const key = (r * plan.stages + stage) * plan.workers + to;
        let ch = byKey.get(key);
        if (ch === undefined) {
          ch = { replica: r, stage, from: p[node.id]!, to, nodes: [], readers: new Set() };
          byKey.set(key, ch);
        }
        ch.nodes.push(node.id);
        for (const [c] of plan.consumers[node.id]!) if (p[c] === to) ch.readers.add(c);
      }
    }
  }
  return [...byKey.values()]
    .map((ch) => ({ ...ch, readers: [...ch.readers].sort((a, b) => a - b) }))
    .sort((a, b) => a.replica - b.replica || a.stage - b.stage || a.to - b.to);
}

/** The flow control of a runtime (Note [activation credits]): bytes per channel, and the schedule's floor. */
export interface FlowSettings {
  /** Bytes of activations a channel may have sent and not yet consumed (at least one microbatch's). */
  readonly windowBytes: number;
  /** The fewest microbatches any channel's window may hold: what the schedule needs not to deadlock. */
  readonly minWindow: number;
}

/**
 * A channel's window in microbatches: as many as fit in `windowBytes`, at least the schedule's floor
 * and one, at most every microbatch (no limit). Without flow control, every microbatch.
 */
export function channelWindow(
  flow: FlowSettings | null,
  bytesPerMicrobatch: number,
  microbatches: number,
): number {
  if (flow === null || bytesPerMicrobatch <= 0) return microbatches;
  const fit = Math.floor(flow.windowBytes / bytesPerMicrobatch);
  return Math.min(microbatches, Math.max(1, flow.minWindow, fit));
}

/**
 * For each stage, the stages whose forwards consume what it sends (on other workers, in replica 0):
 * the credit dependencies of Note [activation credits] for a schedule's dry run.
 */
export function creditWaits(plan: Plan): number[][] {
  const waits: number[][] = Array.from({ length: plan.stages }, () => []);
  for (const ch of channels(plan)) {
    if (ch.replica !== 0) continue;
    for (const reader of ch.readers) {
      const stage = plan.stageOf[reader]!;
      if (!waits[ch.stage]!.includes(stage)) waits[ch.stage]!.push(stage);
    }
  }
  return waits;
}
