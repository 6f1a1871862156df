import { fmtShape, OpError, ShapeError } from '../errors.ts';
import { philox4x32 } from '../tensor/philox.ts';
import { allocateUninit, Tensor } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel } from './rules.ts';

export interface DropoutAttrs {
  /** The probability that an element is dropped. */
  readonly rate: number;
  /** The two words of the Philox key: the user's seed, and which random stream of the graph (by default the node's id). */
  readonly seed: number;
  readonly stream: number;
  readonly [key: string]: unknown;
}

const WORD = 2 ** 32;

/** The words of a key [step, microbatch, replica, training], checked: Note [run context]. */
function keyWords(key: Tensor): [number, number, number, boolean] {
  const d = key.data;
  for (let i = 0; i < 3; i++) {
    if (!Number.isInteger(d[i]) || d[i]! < 0 || d[i]! >= WORD) {
      throw new OpError(
        `dropout: key word ${i} (${['step', 'microbatch', 'replica'][i]}) must be an integer in [0, 2^32), found ${d[i]}`,
        { op: 'dropout', input: 1, expected: 'an integer in [0, 2^32)', found: d[i] },
      );
    }
  }
  if (d[3] !== 0 && d[3] !== 1) {
    throw new OpError(`dropout: key word 3 (training) must be 0 or 1, found ${d[3]}`, {
      op: 'dropout',
      input: 1,
      expected: '0 or 1',
      found: d[3],
    });
  }
  return [d[0]!, d[1]!, d[2]!, d[3] === 1];
}

/**
 * Inverted dropout: in training, each element of x is zeroed with probability `rate` and the others
 * are scaled by 1 / (1 - rate); in evaluation (key word 3 is 0) it is the identity. Input 1 is the
 * key (`stepKey`): element i keeps when Philox word i of (step, microbatch, replica; seed, stream)
 * is at least rate * 2^32 (Note [run context]). Linear in x with a fixed mask, so the VJP is dropout
 * of the cotangent with the same key.
 */
export const dropout: OpDef<DropoutAttrs> = {
  name: 'dropout',
  arity: 2,
  attrs: { rate: 'fraction', seed: 'uint32', stream: 'uint32' },
  nondiff: [1],
  saves: { inputs: [1], output: false },
  infer: ([x, key]) => {
    if (key!.shape.length !== 1 || key!.shape[0] !== 4) {
      throw new ShapeError(
        `dropout: input 1 (the key) has shape ${fmtShape(key!.shape)}, expected [4] (step, microbatch, replica, training) as stepKey makes it`,
        { op: 'dropout', input: 1, expected: [4], found: key!.shape },
      );
    }
    return { shape: x!.shape, dtype: x!.dtype };
  },
  forward: ([x, key], { rate, seed, stream }) => {
    const [step, microbatch, replica, training] = keyWords(key!);
    if (!training || rate === 0) return x!;
    const below = Math.round(rate * WORD);
    const scale = 1 / (1 - rate);
    const src = x!.data;
    const n = src.length;
    // Every element is written below.
    const out = allocateUninit(x!.dtype, n);
    const words = new Uint32Array(4);
    for (let i = 0; i < n; i += 4) {
      philox4x32(i / 4, step, microbatch, replica, seed, stream, words);
      const end = Math.min(4, n - i);
      for (let k = 0; k < end; k++) out[i + k] = words[k]! < below ? 0 : src[i + k]! * scale;
    }
    return new Tensor(x!.dtype, x!.shape, out);
  },
  vjp: (o, { g, input, attrs }) => [o.apply('dropout', [g, input(1)], attrs), null],
  flops: (_, out) => numel(out.shape) * 10,
};
