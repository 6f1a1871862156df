// Builds a 1,000,000-node graph from code, places it per node over 2 workers (every node its own
// actor, consecutive nodes on different workers), runs a forward and backward, and checks the
// gradients against the reference engine.
//
//   npx tsx examples/large-graph.ts [--in-process] [--lanes N] [--depth N]
import { parseArgs } from 'node:util';
import {
  bitwiseEqual,
  createRuntime,
  type Graph,
  GraphBuilder,
  initParams,
  type Node,
  Rng,
  valueAndGrad,
} from 'backflow-runtime';

const { values } = parseArgs({
  options: {
    'in-process': { type: 'boolean' },
    lanes: { type: 'string', default: '1000' },
    depth: { type: 'string', default: '250' },
  },
});
const lanes = Number(values.lanes);
const depth = Number(values.depth);
const mode = values['in-process'] ? 'in-process' : 'threads';

/**
 * A wide graph: `lanes` independent chains of `depth` levels over f32[width]. Per level, t = tanh(h)
 * and h' = tanh(t * h + h) (h feeds three edges, t is shared; the outer tanh keeps values bounded
 * however deep). Each lane starts from its slice of one input scaled by its own parameter; the loss
 * sums every lane's end. About lanes * (4 * depth + 3) nodes. Built lane by lane, so per-node
 * placement puts consecutive nodes of a lane on different workers while the lanes give every worker
 * independent work.
 */
function laneGraph(lanes: number, depth: number, width = 4): Graph {
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

const t0 = performance.now();
const graph = laneGraph(lanes, depth);
const t1 = performance.now();
console.log(`built ${graph.size.toLocaleString()} nodes in ${(t1 - t0).toFixed(0)} ms`);
const params = initParams(graph, 1);
const feeds = { x: new Rng(2).uniformTensor([lanes, 4], -1, 1) };

const t2 = performance.now();
const ref = valueAndGrad(graph, { loss: 'loss' })(feeds, params);
const t3 = performance.now();
console.log(
  `reference engine: forward + backward in ${(t3 - t2).toFixed(0)} ms, peak ${(ref.peakBytes / 2 ** 20).toFixed(1)} MiB of tensors`,
);

const runtime = await createRuntime(graph, {
  mode,
  workers: 2,
  placement: 'per-node',
  params,
  // A step of a million actors takes seconds, not the default deadline's fraction of them.
  stepTimeoutMs: 600_000,
});
const t4 = performance.now();
console.log(`runtime (${mode}, 2 workers, per-node) started in ${(t4 - t3).toFixed(0)} ms`);
try {
  for (let run = 1; run <= 2; run++) {
    const before = await runtime.stats();
    const t5 = performance.now();
    const out = await runtime.step(feeds);
    const ms = performance.now() - t5;
    const after = await runtime.stats();
    const count = (key: 'localMessages' | 'remoteMessages') =>
      after.reduce((s, h, i) => s + h[key] - before[i]![key], 0);
    const remote = count('remoteMessages');
    const local = count('localMessages');
    const same =
      out.loss === ref.value.item() &&
      Object.entries(ref.grads).every(([k, g]) => bitwiseEqual(out.grads[k]!, g));
    console.log(
      `step ${run}: ${ms.toFixed(0)} ms, ${remote.toLocaleString()} cross-worker + ${local.toLocaleString()} local actor messages ` +
        `(${(((remote + local) / ms) * 1000).toFixed(0)} messages/s); gradients ${same ? 'bitwise equal to' : 'DIFFERENT from'} the reference`,
    );
    if (!same) process.exitCode = 1;
  }
} finally {
  await runtime.close();
}
