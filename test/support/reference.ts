// The runtime's oracle check: one step on the runtime and on the reference engine with the same
// shards; loss and every gradient must be bitwise equal.
import { expect } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from './expect.ts';

/** Runs one step on the runtime and the reference, and asserts loss and every gradient are bitwise equal. */
export async function expectMatchesReference(
  graph: Graph,
  params: Record<string, Tensor>,
  feeds: Record<string, Tensor>,
  options: RuntimeOptions,
  runtime?: Runtime,
): Promise<void> {
  const ref = referenceStep(graph, feeds, params, {
    replicas: options.replicas ?? 1,
    microbatches: options.microbatches ?? 1,
    ...(options.loss !== undefined ? { loss: options.loss } : {}),
    ...(options.wrt !== undefined ? { wrt: options.wrt } : {}),
  });
  const rt = runtime ?? (await createRuntime(graph, { onWarning: () => {}, ...options, params }));
  try {
    const out = await rt.step(feeds);
    expect(out.loss).toBe(ref.loss);
    expect(Object.keys(out.grads).sort()).toEqual(Object.keys(ref.grads).sort());
    // The options name the case in a failure (the parameter values would only bury it).
    const where = JSON.stringify({ ...options, params: undefined });
    for (const [name, g] of Object.entries(ref.grads))
      expectBitwise(out.grads[name]!, g, `gradient of ${name} (${where})`);
  } finally {
    if (runtime === undefined) await rt.close();
  }
}
