// Assertions on numbers and tensors the tests share: closeness, each with its tolerance stated, and
// bitwise equality. A failure names what differs and where.
import { expect } from 'vitest';
import { bitwiseEqual, type Tensor } from '../../src/tensor/tensor.ts';

/** Sequences of small vectors (one row per step): every element `toBeCloseTo` at `digits` decimals. */
export function expectRowsClose(actual: number[][], expected: number[][], digits = 13): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, t) => {
    row.forEach((v, i) => {
      expect(v, `step ${t + 1}, element ${i}`).toBeCloseTo(expected[t]![i]!, digits);
    });
  });
}

/**
 * A tensor against values computed by hand: its shape, then every element within `relative` of the
 * expected one, relative to max(1, |expected|). The default suits float64 against float64.
 */
export function expectRelativelyClose(
  actual: Tensor,
  expected: ArrayLike<number>,
  shape: readonly number[],
  relative = 1e-12,
): void {
  expect(actual.shape).toEqual(shape);
  expect(actual.size).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    expect(Math.abs(actual.data[i]! - e)).toBeLessThanOrEqual(relative * Math.max(1, Math.abs(e)));
  }
}

/**
 * A tensor against an oracle tensor, element by element: NaN where the oracle has NaN, equal
 * infinities, else within the absolute tolerance `tolerance(i)` of element i.
 */
export function expectWithin(actual: Tensor, expected: Tensor, tolerance: (i: number) => number): void {
  expect(actual.shape).toEqual(expected.shape);
  expect(actual.dtype).toBe(expected.dtype);
  for (let i = 0; i < actual.size; i++) {
    const [x, y] = [actual.data[i]!, expected.data[i]!];
    const ok = Number.isFinite(y) ? Math.abs(x - y) <= tolerance(i) : Object.is(x, y);
    if (!ok) expect.fail(`element ${i}: ${x} vs oracle ${y} (tolerance ${tolerance(i)})`);
  }
}

/**
 * Bitwise equal except that any NaN matches any NaN (payloads are not specified), and, with
 * `zeroSign` false, 0 matches -0.
 */
export function expectSameValues(actual: Tensor, expected: Tensor, zeroSign = true): void {
  expectWithin(actual, expected, () => 0);
  for (let i = 0; i < actual.size; i++) {
    const [x, y] = [actual.data[i]!, expected.data[i]!];
    if (zeroSign && !Object.is(x, y))
      expect.fail(`element ${i}: ${Object.is(x, -0) ? '-0' : x} vs oracle ${y}`);
  }
}

/** Same dtype, shape and bits. A failure names `what` and the first element that differs. */
export function expectBitwise(actual: Tensor, expected: Tensor, what = 'tensor'): void {
  expect(actual.shape, `${what}: shape`).toEqual(expected.shape);
  expect(actual.dtype, `${what}: dtype`).toBe(expected.dtype);
  if (bitwiseEqual(actual, expected)) return;
  // Object.is tells -0 from 0; only NaN payloads escape it.
  const i = actual.data.findIndex((v, k) => !Object.is(v, expected.data[k]));
  expect.fail(
    i === -1
      ? `${what}: the bits of a NaN differ`
      : `${what}: element ${i} differs: ${actual.data[i]} vs expected ${expected.data[i]}`,
  );
}

/**
 * Every tensor of `expected` bitwise equal to the one of the same name in `actual` (names only in
 * `actual` are not looked at). `what` prefixes the names in failures.
 */
export function expectBitwiseAll(
  actual: Readonly<Record<string, Tensor>>,
  expected: Readonly<Record<string, Tensor>>,
  what = '',
): void {
  for (const [name, t] of Object.entries(expected)) {
    const got = Object.hasOwn(actual, name) ? actual[name] : undefined;
    if (got === undefined) expect.fail(`${what}${name}: missing`);
    expectBitwise(got, t, `${what}${name}`);
  }
}
