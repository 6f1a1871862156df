import { describe, expect, it } from 'vitest';
import { type Batch, type DataCursor, Dataset } from '../../src/data/dataset.ts';
import { spirals } from '../../src/data/synthetic.ts';
import { InputError, ShapeError } from '../../src/errors.ts';
import { tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

/** N examples whose features are (i, -i) and label i % 3, so every row says where it came from. */
function numbered(n: number): Dataset {
  return Dataset.fromExamples(
    (function* () {
      for (let i = 0; i < n; i++) yield { x: [i, -i], y: i % 3 };
    })(),
    { shape: [2] },
  );
}

const ids = (batches: Batch[]) => batches.map((b) => b.indices);

describe('Dataset', () => {
  it('from arrays and from a generator of examples', () => {
    const d = numbered(5);
    expect(d.size).toBe(5);
    expect(d.x.shape).toEqual([5, 2]);
    expect([...d.x.data]).toEqual([0, -0, 1, -1, 2, -2, 3, -3, 4, -4]);
    expect([...d.y.data]).toEqual([0, 1, 2, 0, 1]);
    const s = spirals({ perClass: 10 });
    const fromArrays = new Dataset(s.x, s.y);
    expect(fromArrays.size).toBe(20);
    expect(() => new Dataset(s.x, tensor([1, 2]))).toThrow(ShapeError);
    expect(() => Dataset.fromExamples([{ x: [1], y: 0 }], { shape: [2] })).toThrow(
      /example 0 has 1 features/,
    );
  });

  it('labels per example ([N, T]): batches take whole rows of them, size is N', () => {
    const x = tensor([[0], [1], [2]]);
    const y = tensor([
      [0, 10],
      [1, 11],
      [2, 12],
    ]);
    const d = new Dataset(x, y);
    expect(d.size).toBe(3);
    const [batch] = [...d.batches({ batchSize: 2, shuffle: false })];
    expect(batch!.y.shape).toEqual([2, 2]);
    expect([...batch!.y.data]).toEqual([0, 10, 1, 11]);
    expect(() => new Dataset(x, tensor([[0, 1]]))).toThrow(/same N/);
  });

  it('subset copies rows and checks indices', () => {
    const d = numbered(6).subset([4, 1]);
    expect([...d.x.data]).toEqual([4, -4, 1, -1]);
    expect([...d.y.data]).toEqual([1, 1]);
    expect(() => numbered(3).subset([3])).toThrow(InputError);
  });
});

describe('batches', () => {
  it('without shuffle: in order, the last batch smaller; rows and labels match the indices', () => {
    const batches = numbered(7).batches({ batchSize: 3, shuffle: false });
    expect(batches.batchesPerEpoch).toBe(3);
    const epoch = [...batches];
    expect(ids(epoch)).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    expect(epoch.map((b) => b.index)).toEqual([0, 1, 2]);
    expect(epoch[2]!.x.shape).toEqual([1, 2]);
    expect([...epoch[1]!.x.data]).toEqual([3, -3, 4, -4, 5, -5]);
    expect([...epoch[1]!.y.data]).toEqual([0, 1, 2]);
    expect(batches.epoch).toBe(1);
    expect([...batches].every((b) => b.epoch === 1)).toBe(true);
  });

  it('dropLast skips the short batch, and refuses a batch larger than the dataset', () => {
    const batches = numbered(7).batches({ batchSize: 3, shuffle: false, dropLast: true });
    expect(batches.batchesPerEpoch).toBe(2);
    expect(ids([...batches])).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    expect(ids([...numbered(6).batches({ batchSize: 3, dropLast: true, shuffle: false })])).toHaveLength(2);
    expect(() => numbered(2).batches({ batchSize: 3, dropLast: true })).toThrow(/leaves no batch/);
    expect(() => numbered(2).batches({ batchSize: 0 })).toThrow(InputError);
  });

  it('shuffle: each epoch is a permutation, epochs differ, and the same seed gives the same batches', () => {
    const a = numbered(50).batches({ batchSize: 8, seed: 1 });
    const b = numbered(50).batches({ batchSize: 8, seed: 1 });
    const c = numbered(50).batches({ batchSize: 8, seed: 2 });
    const e0 = [...a].flatMap((x) => x.indices);
    const e1 = [...a].flatMap((x) => x.indices);
    expect([...e0].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(e0).not.toEqual(e1);
    expect([...b].flatMap((x) => x.indices)).toEqual(e0);
    expect([...c].flatMap((x) => x.indices)).not.toEqual(e0);
  });

  it('a cursor saved mid-epoch resumes with bitwise the same remaining batches, across epochs', () => {
    const data = numbered(23);
    for (const [dropLast, stopAfter] of [
      [false, 0],
      [false, 2],
      [true, 3],
      [false, 5], // the end of epoch 0 (5 batches of 5, the last of 3)
      [false, 7],
    ] as const) {
      const all: Batch[] = [];
      const reference = data.batches({ batchSize: 5, seed: 7, dropLast });
      for (let e = 0; e < 3; e++) all.push(...reference);

      const first = data.batches({ batchSize: 5, seed: 7, dropLast });
      const served: Batch[] = [];
      while (served.length < stopAfter) {
        const batch = first.next();
        if (batch !== null) served.push(batch);
      }
      const cursor: DataCursor = JSON.parse(JSON.stringify(first.cursor));
      const resumed = data.batches({ batchSize: 5, seed: 999, dropLast, cursor });
      const rest: Batch[] = [];
      while (resumed.epoch < 3) {
        for (const batch of resumed) rest.push(batch);
      }
      const got = [...served, ...rest];
      expect(ids(got), `dropLast ${dropLast}, cursor after ${stopAfter} batches`).toEqual(ids(all));
      got.forEach((batch, i) => {
        expectBitwise(batch.x, all[i]!.x);
        expectBitwise(batch.y, all[i]!.y);
        expect([batch.epoch, batch.index]).toEqual([all[i]!.epoch, all[i]!.index]);
      });
    }
  });

  it('rejects a cursor for another dataset or a malformed one', () => {
    const cursor = numbered(10).batches({ batchSize: 2 }).cursor;
    expect(() => numbered(11).batches({ batchSize: 2, cursor })).toThrow(
      /cursor is for a dataset of 10 examples, this one has 11/,
    );
    expect(() => numbered(10).batches({ batchSize: 2, cursor: { ...cursor, position: 11 } })).toThrow(
      InputError,
    );
    expect(() =>
      numbered(10).batches({ batchSize: 2, cursor: { ...cursor, rng: [1, 2, 3] as never } }),
    ).toThrow(/rng/);
  });
});
