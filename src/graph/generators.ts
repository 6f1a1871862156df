import { GraphBuilder } from './builder.ts';
import type { Graph, Node } from './graph.ts';

/**
 * A wide graph for large-graph runs: `lanes` independent chains of `depth` levels over f32[width].
 * Per level, t = tanh(h) and h' = tanh(t * h + h) (h feeds three edges, t is shared; the outer tanh
 * keeps values bounded however deep). Each lane starts from its slice of one input scaled by its own
 * parameter; the loss sums every lane's end. About lanes * (4 * depth + 3) nodes. Built lane by lane, so per-node placement puts consecutive nodes of a
 * lane on different workers while the lanes give every worker independent work.
 */
export function laneGraph(lanes: number, depth: number, width = 4): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', [lanes, width]);
  const ends: Node[] = [];
  for (let l = 0; l < lanes; l++) {
    const p = b.param(`p${l}`, [width], { init: { kind: 'uniform', low: 0.1, high: 0.5 } });
    let h = b.mul(b.slice(x, [l, 0], [1, width]), p);
    for (let d = 0; d < depth; d++) {
      const t = b.tanh(h);
      h = b.tanh(b.add(b.mul(t, h), h));
    }
    ends.push(b.sum(h));
  }
  let loss = ends[0]!;
  for (let l = 1; l < ends.length; l++) loss = b.add(loss, ends[l]!);
  b.output('loss', loss);
  return b.build();
}
