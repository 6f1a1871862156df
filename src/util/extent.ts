/**
 * The smallest and largest value of `values` (as `f` maps them), by a loop: `Math.min(...xs)`
 * spreads its argument onto the stack and throws a RangeError past about 120k elements (a 1F1B
 * timeline of 64 stages and 1024 microbatches has 134k spans). [Infinity, -Infinity] when empty.
 */
export function extent<T>(values: readonly T[], f: (v: T) => number): [number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    const x = f(v);
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return [lo, hi];
}

const same = (x: number) => x;

export const minOf = (values: readonly number[]): number => extent(values, same)[0];
export const maxOf = (values: readonly number[]): number => extent(values, same)[1];
