import { DTypeError, fmtShape, ShapeError } from '../errors.ts';
import { installedPool } from './pool.ts';
import { type ConcreteShape, checkConcreteShape, sizeOf } from './shape.ts';

/** The element types: 32- and 64-bit floats. */
export type DType = 'float32' | 'float64';
export const DTYPES: readonly DType[] = ['float32', 'float64'];

/**
 * Tensor storage: an owned, contiguous, row-major typed array. `ArrayBuffer` (never shared) so that a
 * tensor's buffer can be transferred between threads. See Note [owned storage].
 */
export type Storage = Float32Array<ArrayBuffer> | Float64Array<ArrayBuffer>;

// Note [owned storage]
// A tensor owns its whole ArrayBuffer: data.byteOffset is 0 and data.byteLength equals
// buffer.byteLength. That is what lets a tensor cross a MessagePort by transfer, never by clone,
// and lets a worker recycle the buffer (Note [storage pool]). Every storage a kernel makes comes from
// `allocate` or `allocateUninit`; `Tensor` checks the offset.

export function checkDType(dtype: unknown, where: string): asserts dtype is DType {
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new DTypeError(
      `${where}: unsupported dtype ${JSON.stringify(dtype)} (expected 'float32' or 'float64')`,
      {
        expected: DTYPES,
        found: dtype,
      },
    );
  }
}

/** A zero-filled storage of `size` elements: fresh, or recycled by this thread's pool (Note [storage pool]). */
export function allocate(dtype: DType, size: number): Storage {
  const pool = installedPool();
  if (pool?.pools(dtype, size)) return pool.allocate(dtype, size, true);
  return dtype === 'float32' ? new Float32Array(size) : new Float64Array(size);
}

/**
 * A storage whose contents are unspecified (a recycled one keeps what it held; NaN in poison mode),
 * for callers that write every element before anything reads one. Each call site says why it does.
 */
export function allocateUninit(dtype: DType, size: number): Storage {
  const pool = installedPool();
  if (pool?.pools(dtype, size)) return pool.allocate(dtype, size, false);
  return dtype === 'float32' ? new Float32Array(size) : new Float64Array(size);
}

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float32' ? 4 : 8;
}

/**
 * A dense n-dimensional array of float32 or float64 in row-major order. It owns its storage whole
 * (a typed array at offset 0 of its own buffer), so workers can transfer it without copying. Make
 * one with `tensor`, `zeros`, `full`, or an `Rng`.
 */
export class Tensor {
  /** The element type. */
  readonly dtype: DType;
  /** The size of each axis. */
  readonly shape: ConcreteShape;
  /** The elements, row-major: a Float32Array or Float64Array of exactly `size` elements. */
  readonly data: Storage;

  constructor(dtype: DType, shape: ConcreteShape, data: Storage) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
    if (!(data instanceof (dtype === 'float32' ? Float32Array : Float64Array))) {
      throw new DTypeError(
        `Tensor: a ${dtype} tensor needs a ${dtype === 'float32' ? 'Float32Array' : 'Float64Array'}, found ${data.constructor.name}`,
        {
          expected: dtype,
          found: data.constructor.name,
        },
      );
    }
    // Whole-buffer ownership is checked where a buffer is transferred (the codec): reading
    // `data.buffer` here would make V8 move every small on-heap typed array off the heap.
    if (data.byteOffset !== 0) {
      throw new ShapeError(
        'Tensor: storage must own its whole buffer (Note [owned storage]), found a view at an offset',
        {
          expected: 0,
          found: data.byteOffset,
        },
      );
    }
    const expected = sizeOf(shape);
    if (data.length !== expected) {
      throw new ShapeError(
        `Tensor: shape ${fmtShape(shape)} needs ${expected} elements, storage has ${data.length}`,
        { expected, found: data.length },
      );
    }
  }

  /** The number of elements. */
  get size(): number {
    return this.data.length;
  }

  /** The number of axes. */
  get rank(): number {
    return this.shape.length;
  }

  /** The bytes of its storage. */
  get bytes(): number {
    // Note: the same number as data.byteLength, which V8 reads at about twice the cost of length
    // (engines count every tensor's bytes as it lives and dies).
    return this.data.length * (this.dtype === 'float32' ? 4 : 8);
  }

  /** The single value of a tensor with one element. */
  item(): number {
    if (this.data.length !== 1) {
      throw new ShapeError(`item(): expected a tensor with one element, found shape ${fmtShape(this.shape)}`);
    }
    return this.data[0]!;
  }

  /** The values as a nested array (for printing and tests). */
  toArray(): unknown {
    const build = (dim: number, offset: number): unknown => {
      if (dim === this.shape.length) return this.data[offset];
      const n = this.shape[dim]!;
      let stride = 1;
      for (let i = dim + 1; i < this.shape.length; i++) stride *= this.shape[i]!;
      return Array.from({ length: n }, (_, i) => build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }

  /** A short description: `Tensor(f32[2,3])`. */
  toString(): string {
    return `Tensor(${this.dtype === 'float32' ? 'f32' : 'f64'}${fmtShape(this.shape)})`;
  }
}

type Nested = number | readonly Nested[];

function inferShape(values: Nested): number[] {
  const shape: number[] = [];
  let v: Nested = values;
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = (v as readonly Nested[])[0] ?? 0;
  }
  return shape;
}

/**
 * Makes a tensor from numbers: a nested array (shape inferred) or a flat array with an explicit shape.
 * The data is always copied into fresh owned storage.
 */
export function tensor(
  values: Nested | ArrayLike<number>,
  options: { shape?: readonly number[]; dtype?: DType } = {},
): Tensor {
  const dtype = options.dtype ?? 'float32';
  checkDType(dtype, 'tensor');
  let flat: ArrayLike<number>;
  let shape: number[];
  if (typeof values === 'number') {
    flat = [values];
    shape = [];
  } else if (Array.isArray(values)) {
    shape = inferShape(values as Nested);
    flat = (values as unknown[]).flat(Number.POSITIVE_INFINITY) as number[];
  } else {
    flat = values as ArrayLike<number>;
    shape = [flat.length];
  }
  if (options.shape) {
    checkConcreteShape(options.shape, 'tensor');
    shape = [...options.shape];
  }
  if (sizeOf(shape) !== flat.length) {
    throw new ShapeError(
      `tensor: shape ${fmtShape(shape)} needs ${sizeOf(shape)} values, found ${flat.length}`,
      {
        expected: sizeOf(shape),
        found: flat.length,
      },
    );
  }
  const data = allocate(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) data[i] = flat[i]!;
  return new Tensor(dtype, shape, data);
}

/** A tensor of shape [] holding `value`. */
export function scalar(value: number, dtype: DType = 'float32'): Tensor {
  const data = allocate(dtype, 1);
  data[0] = value;
  return new Tensor(dtype, [], data);
}

/** A tensor of `shape` with every element `value`. */
export function full(shape: readonly number[], value: number, dtype: DType = 'float32'): Tensor {
  checkConcreteShape(shape, 'full');
  checkDType(dtype, 'full');
  const data = allocate(dtype, sizeOf(shape));
  if (value !== 0) data.fill(value);
  return new Tensor(dtype, [...shape], data);
}

/** A tensor of `shape` filled with zeros. */
export function zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
  return full(shape, 0, dtype);
}

/** A tensor of `shape` filled with ones. */
export function ones(shape: readonly number[], dtype: DType = 'float32'): Tensor {
  return full(shape, 1, dtype);
}

/** A copy with fresh storage, optionally converted to another dtype. */
export function cast(t: Tensor, dtype: DType = t.dtype): Tensor {
  // Uninit: `set` writes all t.size elements.
  const data = allocateUninit(dtype, t.size);
  data.set(t.data);
  return new Tensor(dtype, t.shape, data);
}

/** The same storage under another shape with the same number of elements. */
export function withShape(t: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(t.dtype, shape, t.data);
}

/** True when both tensors have the same dtype, shape and bit patterns (NaN payloads and -0 included). */
export function bitwiseEqual(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
