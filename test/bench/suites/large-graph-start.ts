/**
 * The `actors` suite's large-graph start as a child process (`large-graph`'s `start_built_ms`): run
 * directly, compiled (`node <out>/test/bench/suites/large-graph-start.js <nodes>`), it starts the
 * runtime the case starts, on the lane graph of about `nodes` nodes placed per node over 2 worker
 * threads, and prints `{ nodes, start_ms }` (createRuntime until it resolves) as one JSON line. The
 * workers then run the compiled worker module under plain node, as a user of the package runs them.
 */
import { pathToFileURL } from 'node:url';
import { laneGraph } from '../../../src/graph/generators.ts';
import { initParams } from '../../../src/graph/params.ts';
import { createRuntime, type RuntimeOptions } from '../../../src/runtime/runtime.ts';

/** The large-graph case's graph and options for about `target` nodes. */
export function largeGraphSetup(target: number) {
  const lanes = 1000;
  // laneGraph has about lanes * (4 * depth + 5) nodes.
  const depth = Math.round((target / lanes - 5) / 4);
  const graph = laneGraph(lanes, depth);
  const options: RuntimeOptions = {
    workers: 2,
    placement: 'per-node',
    params: initParams(graph, 1),
    validate: false,
    stepTimeoutMs: 600_000,
  };
  return { lanes, graph, options };
}

async function child(target: number): Promise<void> {
  const { graph, options } = largeGraphSetup(target);
  const t = performance.now();
  const runtime = await createRuntime(graph, options);
  const startMs = performance.now() - t;
  await runtime.close();
  console.log(JSON.stringify({ nodes: graph.size, start_ms: startMs }));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await child(Number(process.argv[2]));
}
