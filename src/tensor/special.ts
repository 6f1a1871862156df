// Special functions: erf in float64 to full precision, so that gradchecks in float64 hold, and erf
// and exp for results rounded to float32, short and the same bits in the wasm kernels.

/** 1 / sqrt(2 pi), the standard normal density's factor. */
export const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;

/**
 * The error function. For |x| < 3 the series erf(x) = 2/sqrt(pi) e^{-x^2} sum 2^n x^{2n+1}/(2n+1)!!,
 * whose terms are all positive (no cancellation); beyond, 1 - erfc(x) from erfc's continued fraction.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const ax = Math.abs(x);
  if (ax < 3) {
    const x2 = x * x;
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (2 * x2) / (2 * n + 1);
      sum += term;
      if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
  }
  const r = 1 - erfcLarge(ax);
  return x < 0 ? -r : r;
}

// erfc(x) = e^{-x^2}/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))), for x >= 3,
// evaluated with the modified Lentz method.
function erfcLarge(x: number): number {
  if (x > 27) return 0;
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    d = x + a * d;
    if (d === 0) d = tiny;
    c = x + a / c;
    if (c === 0) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return (ONE_OVER_SQRT_PI * Math.exp(-x * x)) / f;
}

// Note [float32 erf]
// For float32 tensors erf is x * P(x^2) / Q(x^2), P and Q of degree 7, a minimax fit of erf(x) / x on
// [0, 4] (relative error at most 8.4e-12), evaluated in float64; from |x| = 4 on it is +-1 (erf is
// within 1.6e-8 of 1 there, which rounds to 1 in float32, and a fused GELU then gives 0 far left, as
// the float64 erf does, not x times the fit's 1.5e-8). Rounded once to float32, that is
// the correctly rounded erf but within about 1e-11 of a halfway point (1 ulp, about one value in 10^4),
// at a few multiply-adds a value instead of the series' dozens and an exp. Odd exactly (-0 and NaN
// included). The float64 erf above stays the series, which gradchecks in float64 need.
// P's and Q's coefficients, constant term first (module constants: TurboFan folds them in).
const P0 = 1.1283791670862016;
const P1 = 0.200342722148491;
const P2 = 0.05811818621538122;
const P3 = 0.004962101011419447;
const P4 = 0.0005130352410139598;
const P5 = 2.1786480409153245e-5;
const P6 = 7.52757222992608e-7;
const P7 = 3.0046653626465703e-9;
const Q1 = 0.5108824475862049;
const Q2 = 0.12180005441519122;
const Q3 = 0.01771883203393629;
const Q4 = 0.001715198385432194;
const Q5 = 0.00011151307401191174;
const Q6 = 4.518920880318722e-6;
const Q7 = 7.329634249824104e-8;

/** erf for a result rounded to float32 (Note [float32 erf]); the wasm kernel computes the same bits. */
export function erf32(x: number): number {
  if (x >= 4) return 1;
  if (x <= -4) return -1;
  const t = x * x;
  const p = ((((((P7 * t + P6) * t + P5) * t + P4) * t + P3) * t + P2) * t + P1) * t + P0;
  const q = ((((((Q7 * t + Q6) * t + Q5) * t + Q4) * t + Q3) * t + Q2) * t + Q1) * t + 1;
  return (x * p) / q;
}

// Note [float32 exp]
// For float32 tensors exp is computed in float64 and rounded once: 0 below -110 (as Math.exp's
// underflow, so that x e^-x^2 stays NaN at infinities in a fused GELU), x clamped to 100 above (the
// float32 result is +inf either way), k = floor(x log2(e) + 1/2), r = x - k ln 2 with ln 2
// split in two (the high part has 32 trailing zero bits, so k times it is exact), e^r by its Taylor
// series to r^11 (|r| <= 0.35: relative error below 1e-14), times 2^k. That is the correctly rounded
// float32 exp but within 1e-14 of a halfway point, and the wasm kernel takes the same steps in
// float64 SIMD (it could not match Math.exp, whose bits are the engine's). floor(v + 1/2), not
// Math.round, so that wasm's f64x2.floor gives the same k.
const LN2_HI = 0.6931471803691238;
const LN2_LO = 1.9082149292705877e-10;
/** 2^k for k in [-160, 150] (k is at least -159), exact (doubling and halving are). */
const POW2_MIN = -160;
const POW2 = (() => {
  const t = new Float64Array(311);
  t[-POW2_MIN] = 1;
  for (let k = 1; k <= 150; k++) t[k - POW2_MIN] = t[k - 1 - POW2_MIN]! * 2;
  for (let k = -1; k >= POW2_MIN; k--) t[k - POW2_MIN] = t[k + 1 - POW2_MIN]! / 2;
  return t;
})();
// 1/n! for n = 2..11.
const E2 = 0.5;
const E3 = 0.16666666666666666;
const E4 = 0.041666666666666664;
const E5 = 0.008333333333333333;
const E6 = 0.001388888888888889;
const E7 = 0.0001984126984126984;
const E8 = 2.48015873015873e-5;
const E9 = 2.7557319223985893e-6;
const E10 = 2.755731922398589e-7;
const E11 = 2.505210838544172e-8;

/** exp for a result rounded to float32 (Note [float32 exp]); the wasm kernel computes the same bits. */
export function exp32(x: number): number {
  if (Number.isNaN(x)) return x;
  if (x < -110) return 0;
  const c = x > 100 ? 100 : x;
  const k = Math.floor(c * Math.LOG2E + 0.5);
  const r = c - k * LN2_HI - k * LN2_LO;
  let p = E11 * r + E10;
  p = p * r + E9;
  p = p * r + E8;
  p = p * r + E7;
  p = p * r + E6;
  p = p * r + E5;
  p = p * r + E4;
  p = p * r + E3;
  p = p * r + E2;
  p = p * r + 1;
  p = p * r + 1;
  return p * POW2[k - POW2_MIN]!;
}
