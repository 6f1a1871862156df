// Note [canonical sum order]: a node's gradient is the left-to-right sum of its contributions sorted by
// (consumer id, input slot), whatever order they arrive in. In float32, with contributions of very
// different magnitudes, another order gives another number; these tests pin the canonical one.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sumCells } from '../../src/autodiff/backprop.ts';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Node } from '../../src/graph/graph.ts';
import { eager } from '../../src/ops/eager.ts';
import type { Attrs, OpDef } from '../../src/ops/op.ts';
import { defineOp } from '../../src/ops/registry.ts';
import { scalar, type Tensor } from '../../src/tensor/tensor.ts';

const f32 = Math.fround;

/** The canonical fold: ((c0 + c1) + c2) + ... with float32 rounding after every addition. */
const foldF32 = (cs: readonly number[]) => cs.slice(1).reduce((s, c) => f32(s + c), f32(cs[0]!));

// weighted(a, b) = wa a + wb b: one consumer sending two different contributions, one per slot.
interface WeightedAttrs extends Attrs {
  readonly wa: number;
  readonly wb: number;
}
const weighted: OpDef<WeightedAttrs> = {
  name: 'test.weighted',
  arity: 2,
  saves: { inputs: 'none', output: false },
  infer: ([a]) => ({ shape: a!.shape, dtype: a!.dtype }),
  forward: ([a, b], { wa, wb }) => eager.add(eager.mul(a!, wa), eager.mul(b!, wb)),
  vjp: (o, { g, attrs: { wa, wb } }) => [o.mul(g, wa), o.mul(g, wb)],
};
defineOp(weighted);

/**
 * A float32 scalar parameter x read by one consumer per multiplier, in order (consumer ids ascending):
 * loss = sum_k m_k x, so the contribution consumer k sends to x is exactly f32(m_k) (the seed is 1).
 */
function fanIn(multipliers: readonly number[]) {
  const b = new GraphBuilder();
  const x = b.param('x', []);
  const terms = multipliers.map((m) => b.mul(x, b.const(scalar(m))));
  b.output(
    'loss',
    terms.slice(1).reduce((s: Node, t) => b.add(s, t), terms[0]!),
  );
  return b.build();
}

/** x's gradient from the reference engine and from evaluating gradGraph; both must agree. */
function gradients(graph: ReturnType<typeof fanIn>) {
  const params = { x: scalar(0.75) };
  const reference = valueAndGrad(graph, { loss: 'loss' })({}, params).grads['x']!.item();
  const symbolic = evaluate(gradGraph(graph, { loss: 'loss' }), {}, params, ['grad:x'])['grad:x']!.item();
  return { reference, symbolic };
}

describe('Note [canonical sum order]', () => {
  it('contributions 1, 1e8, -1e8 (by consumer) sum to (1 + 1e8) - 1e8 = 0 in float32, not 1', () => {
    const { reference, symbolic } = gradients(fanIn([1, 1e8, -1e8]));
    expect(foldF32([1, 1e8, -1e8])).toBe(0);
    // Arrival order (the sweep visits consumers last to first) would give (-1e8 + 1e8) + 1 = 1.
    expect(foldF32([-1e8, 1e8, 1])).toBe(1);
    expect(reference).toBe(0);
    expect(symbolic).toBe(0);
  });

  it('any multipliers: the gradient is the float32 fold in consumer order', () => {
    const magnitude = fc.oneof(
      fc.double({ min: 1e-4, max: 1e-2, noNaN: true }),
      fc.double({ min: 0.5, max: 2, noNaN: true }),
      fc.double({ min: 1e6, max: 1e9, noNaN: true }),
    );
    const multiplier = fc.tuple(fc.boolean(), magnitude).map(([neg, m]) => f32(neg ? -m : m));
    fc.assert(
      fc.property(fc.array(multiplier, { minLength: 3, maxLength: 7 }), (ms) => {
        const { reference, symbolic } = gradients(fanIn(ms));
        expect(reference).toBe(foldF32(ms));
        expect(symbolic).toBe(foldF32(ms));
      }),
      { numRuns: 150 },
    );
  });

  it('within one consumer, contributions go by input slot', () => {
    // x feeds mul(x, 1e8) (consumer k), then weighted(x, x) (consumer k + 1) in slots 0 and 1:
    // contributions 1e8, wa, wb summed as (1e8 + wa) + wb. Swapping the slots changes the result.
    for (const [wa, wb, expected] of [
      [1, -1e8, 0],
      [-1e8, 1, 1],
    ] as const) {
      const b = new GraphBuilder();
      const x = b.param('x', []);
      const big = b.mul(x, b.const(scalar(1e8)));
      b.output('loss', b.add(big, b.apply('test.weighted', [x, x], { wa, wb })));
      const { reference, symbolic } = gradients(b.build());
      expect(foldF32([1e8, wa, wb])).toBe(expected);
      expect(reference).toBe(expected);
      expect(symbolic).toBe(expected);
    }
  });

  it('contributions put into their cells in any arrival order sum to the canonical sum (Note [gradient cells])', () => {
    // Cells in canonical order (consumer id, then slot): (4, 0), (4, 1), (9, 0), (12, 1).
    const contributions = [scalar(1), scalar(1e8), scalar(-1e8), scalar(3)];
    const canonical = foldF32([1, 1e8, -1e8, 3]);
    expect(canonical).toBe(3);
    fc.assert(
      fc.property(fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 }), (arrival) => {
        const cells = new Array<Tensor | undefined>(4).fill(undefined);
        for (const k of arrival) cells[k] = contributions[k];
        expect(sumCells(eager, cells).item()).toBe(canonical);
        expect(cells.every((c) => c === undefined)).toBe(true);
      }),
    );
  });
});
