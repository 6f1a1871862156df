import { sizeOf } from '../tensor/shape.ts';
import { bytesPerElement } from '../tensor/tensor.ts';
import { type Graph, label } from './graph.ts';
import { fmtType } from './print.ts';

/**
 * A graph's summary, as text: its inputs, its layers (parameters grouped by the name before their
 * last '.', as the `nn` helpers name them: `block0.attn.q.w` is `w` of layer `block0.attn.q`) with
 * each parameter's type and the layer's parameter count, its outputs, and the totals.
 */
export function summary(graph: Graph): string {
  const layers = new Map<string, { params: string[]; count: number }>();
  let total = 0;
  let bytes = 0;
  const params = graph.params();
  for (const p of params) {
    const name = p.name!;
    const dot = name.lastIndexOf('.');
    const layer = dot > 0 ? name.slice(0, dot) : name;
    const size = sizeOf(p.shape as number[]);
    const entry = layers.get(layer) ?? { params: [], count: 0 };
    entry.params.push(`${dot > 0 ? name.slice(dot + 1) : name} ${fmtType(p.dtype, p.shape)}`);
    entry.count += size;
    layers.set(layer, entry);
    total += size;
    bytes += size * bytesPerElement(p.dtype);
  }
  const count = (n: number) => n.toLocaleString('en-US');
  const rows = [...layers].map(([layer, e]) => [layer, e.params.join(', '), count(e.count)] as const);
  const header = ['layer', 'parameters', 'count'] as const;
  const width = [0, 1].map((c) => Math.max(header[c]!.length, ...rows.map((r) => r[c]!.length)));
  const countWidth = Math.max(5, ...rows.map((r) => r[2].length));
  const line = (r: readonly [string, string, string]) =>
    `${r[0].padEnd(width[0]!)}  ${r[1].padEnd(width[1]!)}  ${r[2].padStart(countWidth)}`.trimEnd();
  const typed = (ids: readonly [string, number][]) =>
    ids.map(([name, id]) => `${name} ${fmtType(graph.nodeAt(id).dtype, graph.nodeAt(id).shape)}`).join(', ');
  const inputs = graph.inputs().map((n): [string, number] => [label(n), n.id]);
  const kib = bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
  return [
    `inputs: ${typed(inputs) || '-'}`,
    line(header),
    ...rows.map(line),
    `outputs: ${typed(Object.entries(graph.outputs)) || '-'}`,
    `${count(total)} parameters in ${params.length} tensors (${kib}), ${graph.size} nodes`,
  ].join('\n');
}
