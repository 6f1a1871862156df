// The runtime's oracle check: one step on the runtime and on the reference engine with the same
// shards; loss and every gradient must be bitwise equal.
import { expect } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import type { Graph } from '../../src/graph/graph.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { bitwiseEqual, type Tensor } from '../../src/tensor/tensor.ts';

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
    for (const [name, g] of Object.entries(ref.grads)) {
      if (!bitwiseEqual(out.grads[name]!, g)) {
        throw new Error(`gradient of ${name} differs from the reference (${JSON.stringify(options)})`);
      }
    }
  } finally {
    if (runtime === undefined) await rt.close();
  }
}
