import { fmtShape, InputError, ShapeError } from '../errors.ts';
import { isRngState, Rng, type RngState } from '../tensor/rng.ts';
import { sizeOf } from '../tensor/shape.ts';
import { allocate, type DType, Tensor } from '../tensor/tensor.ts';
import { takeRows } from './synthetic.ts';

/** One example: its features (any shape, given flat in row-major order) and its label. */
export interface Example {
  /** Its features, flat, row-major. */
  x: ArrayLike<number>;
  /** Its label. */
  y: number;
}

/** One batch: rows `indices` of the dataset, in that order. */
export interface Batch {
  /** [batch, ...features] */
  x: Tensor;
  /** `[batch, ...labels]`, or `[batch]` for one label per example. */
  y: Tensor;
  /** The dataset's rows it holds, in order. */
  indices: number[];
  /** The epoch it belongs to, from 0. */
  epoch: number;
  /** The batch's number within its epoch, from 0. */
  index: number;
}

/**
 * Where a `Batches` iterator stands, as plain JSON-able data a checkpoint can keep. `rng` is the
 * state at the start of epoch `epoch`, before that epoch's order was drawn, so a resumed run draws the
 * same order and skips the `position` examples already served. Note [resumable batches]
 */
export interface DataCursor {
  /** The epoch, from 0. */
  epoch: number;
  /** Examples of this epoch already served. */
  position: number;
  /** The order's generator at the start of the epoch. */
  rng: RngState;
  /** The dataset's size, checked on resume. */
  size: number;
}

/** How `Dataset.batches` batches: size, shuffling, the last batch, the seed, or a cursor to resume from. */
export interface BatchOptions {
  /** Examples per batch. */
  batchSize: number;
  /** Draw a new order at every epoch (default true). */
  shuffle?: boolean;
  /** Skip the last batch of an epoch when it is smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Seeds the shuffle (default 0); ignored when resuming from `cursor`. */
  seed?: number;
  /** Resume where a previous iterator stood. */
  cursor?: DataCursor;
}

/**
 * Labelled examples held as two tensors: x [N, ...features] and y [N] (a label per example) or
 * y [N, ...] (labels per example: the next token at each position of a sequence, say).
 */
export class Dataset {
  /** The features, [N, ...]. */
  readonly x: Tensor;
  /** The labels, [N] or [N, ...]. */
  readonly y: Tensor;

  constructor(x: Tensor, y: Tensor) {
    if (x.rank < 1 || y.rank < 1 || x.shape[0] !== y.shape[0]) {
      throw new ShapeError(
        `Dataset: needs x [N, ...] and y [N, ...] with the same N, found x ${fmtShape(x.shape)} and y ${fmtShape(y.shape)}`,
        {
          expected: '[N, ...] and [N, ...]',
          found: [x.shape, y.shape],
        },
      );
    }
    this.x = x;
    this.y = y;
  }

  /**
   * Reads every example of a generator (or any iterable) into tensors; features must all have
   * `shape`'s size. The examples are held in memory, so shuffling can reach any of them.
   */
  static fromExamples(
    examples: Iterable<Example>,
    options: { shape: readonly number[]; dtype?: DType },
  ): Dataset {
    const dtype = options.dtype ?? 'float32';
    const width = sizeOf(options.shape);
    const xs: number[] = [];
    const ys: number[] = [];
    let n = 0;
    for (const { x, y } of examples) {
      if (x.length !== width) {
        throw new ShapeError(
          `Dataset.fromExamples: example ${n} has ${x.length} features, shape ${fmtShape(options.shape)} needs ${width}`,
          {
            expected: width,
            found: x.length,
          },
        );
      }
      for (let i = 0; i < width; i++) xs.push(x[i]!);
      ys.push(y);
      n++;
    }
    const x = allocate(dtype, n * width);
    x.set(xs);
    const y = allocate(dtype, n);
    y.set(ys);
    return new Dataset(new Tensor(dtype, [n, ...options.shape], x), new Tensor(dtype, [n], y));
  }

  /** The number of examples, N. */
  get size(): number {
    return this.y.shape[0]!;
  }

  /** Rows `indices`, as a new dataset. */
  subset(indices: readonly number[]): Dataset {
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= this.size) {
        throw new InputError(`Dataset.subset: index ${i} is outside [0, ${this.size})`, {
          expected: `[0, ${this.size})`,
          found: i,
        });
      }
    }
    return new Dataset(takeRows(this.x, indices), takeRows(this.y, indices));
  }

  /** Iterates batches epoch after epoch; see `Batches`. */
  batches(options: BatchOptions): Batches {
    return new Batches(this, options);
  }
}

// Note [resumable batches]
// An epoch's order is drawn from the iterator's Rng when the epoch's first batch is asked for, and
// the cursor keeps the Rng state from before that draw. Saving (epoch, position, state) is then
// enough to rebuild exactly the batches still to come, in a new process too, without saving the order
// itself. A batch counts as served once it has been handed out, so a checkpoint written after
// training on a batch resumes with the next one.

/**
 * Batches over a dataset. Iterating it (`for (const batch of batches)`) serves the rest of the current
 * epoch and then moves to the next one, so one loop per epoch reads naturally; `cursor` can be saved
 * at any time and handed back to `dataset.batches({..., cursor})` to go on bitwise identically.
 */
export class Batches implements Iterable<Batch> {
  /** Examples per batch. */
  readonly batchSize: number;
  /** Whether every epoch draws a new order. */
  readonly shuffle: boolean;
  /** Whether an epoch skips its last batch when it is smaller. */
  readonly dropLast: boolean;
  private readonly rng: Rng;
  private epochStart: RngState;
  private order: number[] | null = null;
  private epochNumber: number;
  private position: number;

  constructor(
    /** The dataset it batches. */
    readonly dataset: Dataset,
    options: BatchOptions,
  ) {
    const { batchSize, cursor } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new InputError(`batches: batchSize must be an integer >= 1, found ${batchSize}`, {
        expected: '>= 1',
        found: batchSize,
      });
    }
    this.batchSize = batchSize;
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    if (cursor !== undefined) checkCursor(cursor, dataset.size);
    this.rng = cursor ? Rng.fromState(cursor.rng) : new Rng(options.seed ?? 0);
    this.epochStart = this.rng.getState();
    this.epochNumber = cursor?.epoch ?? 0;
    this.position = cursor?.position ?? 0;
    if (this.batchesPerEpoch === 0) {
      throw new InputError(
        `batches: dropLast with batchSize ${batchSize} leaves no batch of a dataset of ${dataset.size}`,
        {
          expected: `batchSize <= ${dataset.size}`,
          found: batchSize,
        },
      );
    }
  }

  /** Batches in one epoch: floor(N / batchSize) with dropLast, else ceil. */
  get batchesPerEpoch(): number {
    const n = this.dataset.size;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The current epoch, from 0. */
  get epoch(): number {
    return this.epochNumber;
  }

  /** Where the next batch comes from (a copy). */
  get cursor(): DataCursor {
    return {
      epoch: this.epochNumber,
      position: this.position,
      rng: [...this.epochStart],
      size: this.dataset.size,
    };
  }

  /** The next batch of the current epoch, or null (moving to the next epoch) when it has none left. */
  next(): Batch | null {
    const n = this.dataset.size;
    const end = this.position + this.batchSize;
    const order = this.epochOrder();
    if (this.position >= n || (this.dropLast && end > n)) {
      this.epochNumber++;
      this.position = 0;
      this.order = null;
      this.epochStart = this.rng.getState();
      return null;
    }
    const indices = order.slice(this.position, Math.min(end, n));
    const index = this.position / this.batchSize;
    this.position += indices.length;
    return {
      x: takeRows(this.dataset.x, indices),
      y: takeRows(this.dataset.y, indices),
      indices,
      epoch: this.epochNumber,
      index,
    };
  }

  /** The current epoch's order, drawn on first use from the state the epoch started with. */
  private epochOrder(): number[] {
    if (this.order === null) {
      this.rng.setState(this.epochStart);
      const order = Array.from({ length: this.dataset.size }, (_, i) => i);
      this.order = this.shuffle ? this.rng.shuffle(order) : order;
    }
    return this.order;
  }

  /** The current epoch's remaining batches (the next loop goes on with the next epoch). */
  *[Symbol.iterator](): Iterator<Batch> {
    for (let batch = this.next(); batch !== null; batch = this.next()) yield batch;
  }
}

function checkCursor(cursor: DataCursor, size: number): void {
  const bad = (what: string, found: unknown) => {
    throw new InputError(`batches: cursor ${what}`, { expected: what, found });
  };
  if (cursor.size !== size)
    bad(`is for a dataset of ${cursor.size} examples, this one has ${size}`, cursor.size);
  if (!Number.isInteger(cursor.epoch) || cursor.epoch < 0) bad(`epoch must be an integer >= 0`, cursor.epoch);
  if (!Number.isInteger(cursor.position) || cursor.position < 0 || cursor.position > size) {
    bad(`position must be an integer in [0, ${size}]`, cursor.position);
  }
  if (!isRngState(cursor.rng)) bad('rng must be four 32-bit unsigned integers', cursor.rng);
}
