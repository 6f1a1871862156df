import { allocate, Tensor } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';

// Note [run context]
// A random op (dropout) must draw the same numbers for a shard wherever it runs: on any worker, in
// any placement or replica count, and on the reference engine. So a draw is not the next output of a
// generator's state but a pure function of what it is for (Philox, src/tensor/philox.ts): the
// `seed` and `stream` fixed in the graph, the step, the shard's microbatch and replica, and as the
// counter the element's flat index in the shard's value. The runtime cuts a batch into the shards
// `splitBatch` makes, and referenceStep runs the same shards, so an index names the same element in
// both. Every engine hands forward a `RunContext`: the runtime's from the step start (the training
// step its caller counts, `StepOptions.step`), referenceStep's per shard, evaluate's and predict's
// evaluation mode. `stepKey` is the one op that reads it, and makes it a value; dropout reads that
// value as an input, so its VJP (dropout of the cotangent with the same key, hence the same mask)
// is an ordinary op application that every engine runs, gradGraph's included, with no context.

/** The run's key as a value: [step, microbatch, replica, training (1 or 0)], float64 so every word is exact. */
export const stepKey: OpDef = {
  name: 'stepKey',
  arity: 0,
  attrs: {},
  saves: { inputs: 'none', output: false },
  infer: () => ({ shape: [4], dtype: 'float64' }),
  forward: (_, __, run) => {
    const data = allocate('float64', 4);
    data[0] = run.step;
    data[1] = run.microbatch;
    data[2] = run.replica;
    data[3] = run.training ? 1 : 0;
    return new Tensor('float64', [4], data);
  },
  flops: () => 0,
};
