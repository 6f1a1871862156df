import { label } from '../graph/graph.ts';
import { fmtBytes } from './memory.ts';
import type { Plan } from './plan.ts';

const fmtFlops = (f: number) =>
  f >= 1e9
    ? `${(f / 1e9).toFixed(2)} GFLOP`
    : f >= 1e6
      ? `${(f / 1e6).toFixed(2)} MFLOP`
      : `${Math.round(f)} FLOP`;

/**
 * A plan as text: per worker, its pipeline stages (Note [stage placement]), nodes, parameters and
 * estimated load; then the edges that cross workers (at most `maxEdges` of them listed).
 */
export function printPlan(plan: Plan, options: { maxEdges?: number } = {}): string {
  const { graph } = plan;
  const lines = [
    `plan: ${plan.workers} worker${plan.workers === 1 ? '' : 's'}, ${plan.replicas} replica${plan.replicas === 1 ? '' : 's'}, placement ${plan.strategy}, loss ${label(graph.nodeAt(plan.loss))}`,
  ];
  for (let w = 0; w < plan.workers; w++) {
    const perReplica: number[] = [];
    const params: string[] = [];
    for (let r = 0; r < plan.replicas; r++) {
      let count = 0;
      for (const node of graph.nodes) {
        if (plan.placement[r]![node.id] !== w) continue;
        if (node.op === 'param') {
          if (r === 0) params.push(label(node));
        } else count++;
      }
      perReplica.push(count);
    }
    const nodes = perReplica.map((c, r) => (plan.replicas > 1 ? `r${r}: ${c}` : `${c}`)).join(', ');
    const stages = plan.stageWorkers.flatMap((v, s) => (v === w % plan.group ? [s] : []));
    const staged =
      plan.strategy === 'stages' || plan.strategy === 'manual'
        ? `stage${stages.length === 1 ? '' : 's'} ${stages.join(', ')}; `
        : '';
    lines.push(
      `  worker ${w}: ${staged}nodes ${nodes}; params [${params.join(', ')}]; load ${fmtFlops(plan.load[w]!)}`,
    );
  }
  const total = plan.crossEdges.reduce((s, e) => s + e.bytes, 0);
  lines.push(
    `cross-worker edges: ${plan.crossEdges.length} (${fmtBytes(total)} of activations per step at the estimate batch size)`,
  );
  const max = options.maxEdges ?? 20;
  for (const e of plan.crossEdges.slice(0, max)) {
    const from = graph.nodeAt(e.from);
    const to = graph.nodeAt(e.to);
    lines.push(
      `  r${e.replica} ${label(from)} (${from.op}) w${e.fromWorker} -> ${label(to)}:${e.slot} (${to.op}) w${e.toWorker}  ${fmtBytes(e.bytes)}`,
    );
  }
  if (plan.crossEdges.length > max) lines.push(`  ... ${plan.crossEdges.length - max} more`);
  return lines.join('\n');
}
