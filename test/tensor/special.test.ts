// Note [float32 erf]: the rational erf against the float64 series erf (itself within 4 eps of
// tabulated values, test/ops/forward.test.ts), and the erf kernel on float32 tensors. Note [float32
// exp]: exp32 against Math.exp.
import { describe, expect, it } from 'vitest';
import '../../src/tensor/kernels-ts.ts';
import { fallbackKernels } from '../../src/tensor/kernels.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { erf, erf32, exp32 } from '../../src/tensor/special.ts';
import { tensor } from '../../src/tensor/tensor.ts';

/** Seeded points across [-4, 4], and tiny ones down to 1e-30 where erf(x) is about 2x/sqrt(pi). */
function points(): number[] {
  const rng = new Rng(3);
  const xs = Array.from({ length: 20_000 }, () => rng.uniform(-4, 4));
  for (let i = 0; i < 2_000; i++) xs.push((rng.next() < 0.5 ? -1 : 1) * 10 ** rng.uniform(-30, 0));
  return xs;
}

describe('erf32 (Note [float32 erf])', () => {
  it('is within 1e-11 relative of the series on [-4, 4]', () => {
    let worst = 0;
    for (const x of points()) worst = Math.max(worst, Math.abs(erf32(x) - erf(x)) / Math.abs(erf(x)));
    expect(worst).toBeLessThan(1e-11);
  });

  it('is +-1 from |x| = 4 on, and just before 4 rounds to 1 in float32; odd, with -0, NaN and infinities', () => {
    for (const x of [4, 4.5, 9, 1e30, Number.POSITIVE_INFINITY]) {
      expect(erf32(x)).toBe(1);
      expect(erf32(-x)).toBe(-1);
    }
    expect(Math.fround(erf32(3.9999999))).toBe(1);
    for (const x of points()) expect(erf32(-x)).toBe(-erf32(x));
    expect(Object.is(erf32(-0), -0)).toBe(true);
    expect(erf32(0)).toBe(0);
    expect(erf32(Number.NaN)).toBeNaN();
  });

  it('the float32 kernel rounds erf32 once: the series rounded but for 1 ulp near halfway points', () => {
    const xs = points();
    const x = tensor(xs, { dtype: 'float32' });
    const out = fallbackKernels().unary('erf', x).data;
    let differ = 0;
    for (let i = 0; i < xs.length; i++) {
      const v = x.data[i]!;
      expect(out[i]).toBe(Math.fround(erf32(v)));
      const exact = Math.fround(erf(v));
      if (out[i] === exact) continue;
      differ++;
      // One float32 step apart, the series' value within 1e-10 (relative) of the halfway point.
      const halfway = (out[i]! + exact) / 2;
      expect(Math.abs(erf(v) - halfway) / Math.abs(halfway)).toBeLessThan(1e-10);
      expect(Math.abs(out[i]! - exact) / Math.abs(exact)).toBeLessThan(2 ** -22);
    }
    expect(differ).toBeLessThan(xs.length / 1000);
  });
});

describe('exp32 (Note [float32 exp])', () => {
  it('is within 1e-14 relative of Math.exp on [-110, 100]; past the clamps float32 gives 0 and +inf', () => {
    const rng = new Rng(5);
    let worst = 0;
    for (let i = 0; i < 20_000; i++) {
      const x = i % 2 === 0 ? rng.uniform(-110, 100) : rng.uniform(-3, 3);
      worst = Math.max(worst, Math.abs(exp32(x) - Math.exp(x)) / Math.exp(x));
    }
    expect(worst).toBeLessThan(1e-14);
    for (const x of [89, 200, Number.POSITIVE_INFINITY])
      expect(Math.fround(exp32(x))).toBe(Number.POSITIVE_INFINITY);
    for (const x of [-104, -200, Number.NEGATIVE_INFINITY]) expect(Math.fround(exp32(x))).toBe(0);
    expect(exp32(-110.5)).toBe(0); // not 2^-159 (Note [float32 exp])
    expect(exp32(0)).toBe(1);
    expect(exp32(-0)).toBe(1);
    expect(exp32(Number.NaN)).toBeNaN();
  });

  it('the float32 kernel rounds exp32 once: Math.exp rounded, float32 subnormals included', () => {
    const rng = new Rng(6);
    const xs = Array.from({ length: 20_000 }, (_, i) =>
      i % 4 === 0 ? rng.uniform(-104, -87) : rng.uniform(-20, 89),
    );
    const x = tensor(xs, { dtype: 'float32' });
    const out = fallbackKernels().unary('exp', x).data;
    let differ = 0;
    for (let i = 0; i < xs.length; i++) {
      expect(out[i]).toBe(Math.fround(exp32(x.data[i]!)));
      if (out[i] !== Math.fround(Math.exp(x.data[i]!))) differ++;
    }
    expect(differ).toBeLessThan(3);
  });
});
