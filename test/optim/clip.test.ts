import { describe, expect, it } from 'vitest';
import { clipGlobalNorm, globalNorm } from '../../src/optim/clip.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

describe('clipGlobalNorm', () => {
  it('reports the norm before clipping and scales to a global norm of 1.0', () => {
    // Norm of (3, 4) and (12): sqrt(9 + 16 + 144) = 13.
    const grads = { b: tensor([12]), a: tensor([3, 4], { dtype: 'float64' }) };
    const r = clipGlobalNorm(grads, 1.0);
    expect(r.norm).toBe(13);
    expect(r.clipped).toBe(true);
    expect(r.scale).toBe(1 / 13);
    expect(globalNorm(r.grads)).toBeCloseTo(1, 7);
    expect([...r.grads.a!.data]).toEqual([3 / 13, 4 / 13]);
    expect(r.grads.b!.dtype).toBe('float32');
    expect([...grads.a.data]).toEqual([3, 4]); // inputs untouched
  });

  it('random float32 gradients clipped to 1.0 have norm 1.0 within float32 rounding', () => {
    const rng = new Rng(5);
    const grads = {
      w1: rng.normalTensor([64, 32], 0, 3),
      b1: rng.normalTensor([32]),
      w2: rng.normalTensor([32, 10]),
    };
    const r = clipGlobalNorm(grads, 1.0);
    expect(r.norm).toBeGreaterThan(1);
    expect(Math.abs(globalNorm(r.grads) - 1)).toBeLessThan(1e-6);
  });

  it('leaves gradients under the limit as they are (same tensors)', () => {
    const grads = { a: tensor([0.3, 0.4]) };
    const r = clipGlobalNorm(grads, 1.0);
    expect(r.clipped).toBe(false);
    expect(r.scale).toBe(1);
    expect(r.grads.a).toBe(grads.a);
    expect(r.norm).toBeCloseTo(0.5, 7);
  });

  it('sums in a fixed order (Note [global norm order]): per parameter, then over sorted names', () => {
    const rng = new Rng(9);
    const names = Array.from({ length: 12 }, (_, i) => `p${i}`);
    const values = names.map(() => rng.normalTensor([17], 0, 10 ** rng.uniform(-3, 3)));
    const forward = Object.fromEntries(names.map((n, i) => [n, values[i]!]));
    const backward = Object.fromEntries(names.map((n, i) => [n, values[i]!]).reverse());
    expect(Object.is(globalNorm(forward), globalNorm(backward))).toBe(true);
    let sum = 0;
    for (const n of [...names].sort()) {
      let own = 0;
      for (const v of forward[n]!.data) own += v * v;
      sum += own;
    }
    expect(globalNorm(forward)).toBe(Math.sqrt(sum));
    const a = clipGlobalNorm(forward, 0.5);
    const b = clipGlobalNorm(backward, 0.5);
    for (const n of names) expectBitwise(a.grads[n]!, b.grads[n]!);
  });

  it('a non-finite gradient gives a non-finite norm and leaves the gradients unscaled', () => {
    const r = clipGlobalNorm({ a: tensor([1, Number.NaN]), b: tensor([2]) }, 1);
    expect(r.norm).toBeNaN();
    expect(r.clipped).toBe(false);
    expect(clipGlobalNorm({ a: tensor([Number.POSITIVE_INFINITY]) }, 1).norm).toBe(Number.POSITIVE_INFINITY);
  });

  it('rejects a maxNorm that is not a finite positive number', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => clipGlobalNorm({}, bad)).toThrow(/maxNorm/);
  });
});
