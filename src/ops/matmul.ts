import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { tryBroadcastShapes } from '../tensor/shape.ts';
import type { OpDef } from './op.ts';
import { numel, sameDType } from './rules.ts';

export interface MatmulAttrs {
  readonly transA: boolean;
  readonly transB: boolean;
  readonly [key: string]: unknown;
}

/**
 * C = op(A) op(B) over the last two axes, leading axes broadcast. Each operand's gradient is one
 * matmul with the right transposes (no transpose is ever materialized), and is computed only when
 * asked for: that is the input/weight split of a zero-bubble backward.
 */
export const matmul: OpDef<MatmulAttrs> = {
  name: 'matmul',
  arity: 2,
  attrs: { transA: 'boolean', transB: 'boolean' },
  saves: { inputs: 'all', output: false },
  infer: (inputs, { transA, transB }) => {
    const [a, b] = inputs as [(typeof inputs)[0], (typeof inputs)[0]];
    const dtype = sameDType('matmul', inputs);
    for (const [i, x] of [a, b].entries()) {
      if (x.shape.length < 2) {
        throw new ShapeError(`matmul: input ${i} has shape ${fmtShape(x.shape)}, expected rank >= 2`, {
          op: 'matmul',
          input: i,
          expected: 'rank >= 2',
          found: x.shape,
        });
      }
    }
    const ar = a.shape.length;
    const br = b.shape.length;
    const m = transA ? a.shape[ar - 1]! : a.shape[ar - 2]!;
    const k = transA ? a.shape[ar - 2]! : a.shape[ar - 1]!;
    const k2 = transB ? b.shape[br - 1]! : b.shape[br - 2]!;
    const n = transB ? b.shape[br - 2]! : b.shape[br - 1]!;
    if (k !== k2) {
      throw new ShapeError(
        `matmul: inner dimensions differ: ${fmtShape(a.shape)}${transA ? '^T' : ''} x ${fmtShape(b.shape)}${transB ? '^T' : ''} (${k} in input 0 vs ${k2} in input 1)`,
        { op: 'matmul', input: 1, expected: k, found: k2 },
      );
    }
    const batch = tryBroadcastShapes(a.shape.slice(0, ar - 2), b.shape.slice(0, br - 2));
    if (batch === null) {
      throw new ShapeError(
        `matmul: batch dimensions of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} do not broadcast`,
        {
          op: 'matmul',
          input: 1,
          expected: `batch dimensions that broadcast with ${fmtShape(a.shape)}`,
          found: b.shape,
        },
      );
    }
    return { shape: [...batch, m, n], dtype };
  },
  forward: ([a, b], { transA, transB }) => kernels().matmul(a!, b!, transA, transB),
  vjp: (o, { g, input, needs, attrs: { transA, transB } }) => {
    const a = input(0);
    const b = input(1);
    let ga: typeof g | null = null;
    let gb: typeof g | null = null;
    // With C = op(A) op(B): dop(A) = G op(B)^T and dop(B) = op(A)^T G, then undo op on each.
    if (needs[0]) {
      ga = transA ? o.matmul(b, g, { transA: transB, transB: true }) : o.matmul(g, b, { transB: !transB });
    }
    if (needs[1]) {
      gb = transB ? o.matmul(g, a, { transA: true, transB: transA }) : o.matmul(a, g, { transA: !transA });
    }
    return [ga, gb];
  },
  flops: ([a], out, { transA }) => {
    const r = a!.shape.length;
    const k = transA ? a!.shape[r - 2] : a!.shape[r - 1];
    return 2 * numel(out.shape) * (typeof k === 'number' ? k : 1);
  },
};
