// Special functions computed in float64 to full precision, so that gradchecks in float64 hold.

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
// [0, 4] (relative error at most 8.4e-12), evaluated in float64 with x clamped to [-4, 4]: beyond 4,
// erf is within 1.6e-8 of 1 and rounds to +-1 in float32 either way. Rounded once to float32, that is
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
  const c = x > 4 ? 4 : x < -4 ? -4 : x;
  const t = c * c;
  const p = ((((((P7 * t + P6) * t + P5) * t + P4) * t + P3) * t + P2) * t + P1) * t + P0;
  const q = ((((((Q7 * t + Q6) * t + Q5) * t + Q4) * t + Q3) * t + Q2) * t + Q1) * t + 1;
  return (c * p) / q;
}
