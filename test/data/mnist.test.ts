import { beforeAll, describe, expect, it } from 'vitest';
import { loadMnist, MNIST_PIXELS, type MnistSplit, mnistDigits } from '../../src/data/mnist.ts';
import { InputError } from '../../src/errors.ts';

function classCounts(labels: ArrayLike<number>): number[] {
  const counts = new Array<number>(10).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  return counts;
}

describe('MNIST', () => {
  let split: MnistSplit;
  beforeAll(() => {
    split = loadMnist({ seed: 1 });
  });

  // How long loading takes is the train benchmark's `mnist-load` case, not an assertion here.
  it('loads 8,000 train and 2,000 test digits', () => {
    expect(split.train.size).toBe(8000);
    expect(split.test.size).toBe(2000);
    expect(split.train.x.shape).toEqual([8000, 784]);
    expect(split.train.x.dtype).toBe('float32');
    expect(split.classes).toBe(10);
  });

  it('pixels in [0, 1] and labels as class indices 0-9', () => {
    let [lo, hi] = [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
    for (const v of split.train.x.data) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    expect(lo).toBe(0);
    expect(hi).toBe(1);
    for (const y of split.test.y.data) expect(Number.isInteger(y) && y >= 0 && y <= 9).toBe(true);
  });

  it('no example is in both sets, and each row holds the pixels and label of its source example', () => {
    const { train, test } = split.sources;
    const inTrain = new Set(train);
    expect(inTrain.size).toBe(8000);
    expect(new Set(test).size).toBe(2000);
    expect(test.filter((i) => inTrain.has(i))).toEqual([]);
    const raw = mnistDigits();
    const sizes = raw.map((r) => r.length / MNIST_PIXELS);
    for (const row of [0, 1, 4321, 7999]) {
      let [digit, i] = [0, train[row]!];
      while (i >= sizes[digit]!) i -= sizes[digit++]!;
      expect(split.train.y.data[row]).toBe(digit);
      const pixels = raw[digit]!.slice(i * MNIST_PIXELS, (i + 1) * MNIST_PIXELS);
      expect([...split.train.x.data.subarray(row * MNIST_PIXELS, (row + 1) * MNIST_PIXELS)]).toEqual(
        pixels.map(Math.fround),
      );
    }
  });

  it('keeps every class in proportion (stratified: within one example of the exact share)', () => {
    const sizes = mnistDigits().map((r) => r.length / MNIST_PIXELS);
    const train = classCounts(split.train.y.data);
    const test = classCounts(split.test.y.data);
    sizes.forEach((n, d) => {
      expect(Math.abs(train[d]! - n * 0.8)).toBeLessThan(1);
      expect(train[d]! + test[d]!).toBe(n);
    });
  });

  it('the same seed gives the same sets, another seed other sets', () => {
    const again = loadMnist({ seed: 1 });
    expect(
      Buffer.compare(Buffer.from(again.train.x.data.buffer), Buffer.from(split.train.x.data.buffer)),
    ).toBe(0);
    expect([...again.test.y.data]).toEqual([...split.test.y.data]);
    const other = loadMnist({ seed: 2, train: 1000, test: 500 });
    expect(other.train.size).toBe(1000);
    expect(other.test.size).toBe(500);
    expect([...other.train.y.data.subarray(0, 50)]).not.toEqual([...split.train.y.data.subarray(0, 50)]);
    // Smaller sets stay stratified: about 10% of each class.
    for (const c of classCounts(other.train.y.data)) expect(c).toBeGreaterThan(80);
  });

  it('the order within a set is shuffled, not grouped by class', () => {
    const first100 = classCounts(split.train.y.data.subarray(0, 100));
    expect(first100.filter((c) => c > 0).length).toBe(10);
  });

  it('rejects sizes that do not fit', () => {
    expect(() => loadMnist({ train: 9000, test: 2000 })).toThrow(InputError);
  });
});
