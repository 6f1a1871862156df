// Dropout and the run's key (Note [run context] in src/ops/step-key.ts): the keep rate, the scale,
// a mask that is a function of the key and the element's index only, the same mask in the VJP, and
// the identity in evaluation mode. Its gradcheck is in the table of gradcheck.test.ts; the runtime's
// masks against referenceStep's are in test/runtime/dropout.test.ts.
import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { OpError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { eager } from '../../src/ops/eager.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { ones, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

const key = (step: number, microbatch: number, replica: number, training = 1) =>
  tensor([step, microbatch, replica, training], { dtype: 'float64' });

/** Which elements a dropout of ones keeps (1) or drops (0). */
const maskOf = (out: Tensor) => Array.from(out.data, (v) => (v === 0 ? 0 : 1));
const kept = (mask: number[]) => mask.reduce((s, m) => s + m, 0);

describe('dropout', () => {
  it.each([0.1, 0.5, 0.9])(
    'rate %s: keeps 1 - rate of 20,000 elements within 4 standard deviations',
    (rate) => {
      const n = 20_000;
      const out = eager.dropout(ones([200, 100]), rate, { key: key(3, 0, 0) });
      const p = 1 - rate;
      const sd = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(kept(maskOf(out)) - n * p)).toBeLessThan(4 * sd);
    },
  );

  it('scales what it keeps by 1 / (1 - rate), rounded once to the dtype, and drops to +0', () => {
    const x = new Rng(1).normalTensor([50, 8]);
    const out = eager.dropout(x, 0.25, { key: key(1, 0, 0) });
    for (let i = 0; i < x.size; i++) {
      if (Object.is(out.data[i], 0)) continue;
      expect(out.data[i]).toBe(Math.fround(x.data[i]! * (1 / 0.75)));
    }
    expect(Array.from(out.data).some((v) => Object.is(v, -0))).toBe(false);
  });

  it('draws an independent mask per step, microbatch, replica, seed and stream', () => {
    const x = ones([64, 64]);
    const base = maskOf(eager.dropout(x, 0.5, { key: key(1, 0, 0) }));
    const others = [
      eager.dropout(x, 0.5, { key: key(2, 0, 0) }),
      eager.dropout(x, 0.5, { key: key(1, 1, 0) }),
      eager.dropout(x, 0.5, { key: key(1, 0, 1) }),
      eager.dropout(x, 0.5, { key: key(1, 0, 0), seed: 1 }),
      eager.dropout(x, 0.5, { key: key(1, 0, 0), stream: 1 }),
    ].map(maskOf);
    // Two independent masks of keep rate 1/2 agree on half the elements: 2048 of 4096, sd 32.
    for (const other of others) {
      const agree = other.filter((m, i) => m === base[i]).length;
      expect(Math.abs(agree - 2048)).toBeLessThan(4 * 32);
    }
  });

  it("element i's draw depends on its index only: a longer tensor extends the shorter one's mask", () => {
    const short = maskOf(eager.dropout(ones([7]), 0.5, { key: key(4, 2, 1) }));
    const long = maskOf(eager.dropout(ones([3, 5]), 0.5, { key: key(4, 2, 1) }));
    expect(long.slice(0, 7)).toEqual(short);
  });

  it('is the identity in evaluation mode, at rate 0, in eager ops and in evaluate', () => {
    const x = new Rng(2).normalTensor([4, 5]);
    expect(eager.dropout(x, 0.5, { key: key(1, 0, 0, 0) })).toBe(x);
    expect(eager.dropout(x, 0, { key: key(1, 0, 0) })).toBe(x);
    // Eager ops run outside any step: their stepKey says evaluation.
    expect(Array.from(eager.apply('stepKey', []).data)).toEqual([0, 0, 0, 0]);
    expect(eager.dropout(x, 0.5)).toBe(x);
    const b = new GraphBuilder();
    b.output('y', b.dropout(b.input('x', ['B', 5]), 0.5));
    expectBitwise(evaluate(b.build(), { x })['y']!, x);
  });

  it("reads the run's key from the run context: step, microbatch, replica, training", () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 6]);
    b.output('key', b.apply('stepKey', []));
    b.output('y', b.dropout(x, 0.5, { seed: 9 }));
    const graph = b.build();
    const xs = new Rng(3).normalTensor([5, 6]);
    const out = evaluate(graph, { x: xs }, {}, undefined, {
      step: 12,
      microbatch: 3,
      replica: 1,
      training: true,
    });
    expect(Array.from(out['key']!.data)).toEqual([12, 3, 1, 1]);
    const stream = graph.node('y').attrs['stream'];
    expect(stream).toBe(graph.node('y').id);
    expectBitwise(
      out['y']!,
      eager.dropout(xs, 0.5, { key: key(12, 3, 1), seed: 9, stream: stream as number }),
    );
  });

  it('differentiates with the same mask: the gradient of sum(dropout(x) * r) is dropout(r)', () => {
    const b = new GraphBuilder();
    const x = b.param('x', [6, 7]);
    const r = new Rng(4).normalTensor([6, 7]);
    const y = b.dropout(x, 0.4, { seed: 2 });
    b.output('loss', b.sum(b.mul(y, b.const(r))));
    const graph = b.build();
    const run = { step: 5, microbatch: 1, replica: 0, training: true };
    const xs = new Rng(5).normalTensor([6, 7]);
    const { grads } = valueAndGrad(graph, { loss: 'loss' })({}, { x: xs }, { run });
    const stream = y.attrs['stream'] as number;
    expectBitwise(grads['x']!, eager.dropout(r, 0.4, { key: key(5, 1, 0), seed: 2, stream }));
  });

  it('refuses a key of another shape (ShapeError) or with words out of range (OpError)', () => {
    const x = ones([2, 2]);
    expect(() => eager.dropout(x, 0.5, { key: tensor([1, 0, 0], { dtype: 'float64' }) })).toThrow(ShapeError);
    expect(() => eager.dropout(x, 0.5, { key: key(1.5, 0, 0) })).toThrow(/key word 0 \(step\)/);
    expect(() => eager.dropout(x, 0.5, { key: key(1, -1, 0) })).toThrow(OpError);
    expect(() => eager.dropout(x, 0.5, { key: key(1, 0, 0, 2) })).toThrow(/training\) must be 0 or 1/);
  });
});
