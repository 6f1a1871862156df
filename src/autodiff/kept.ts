import { type ConcreteShape, isConcrete, type Shape, sizeOf } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';

// Note [kept values]
// The forward of valueAndGrad keeps, until the backward reads them, the values the VJPs read
// (`savedCounts`). On a graph of small tensors these are a large share of what the forward makes, and
// each kept tensor (three heap objects: the tensor, its typed array, the array's buffer) outlives the
// young generation, which the collector pays for by copying it twice: a million-node graph of f32[4]
// spent about a third of valueAndGrad in those collections. So a small kept value (KEPT_MAX elements
// at most), once no later node of the forward reads it, is kept as its bits instead: copied into
// chunks of one typed array per dtype, and made into a tensor again, a copy of the same bits, each
// time a VJP reads it. Copies are made by `set` and `slice` between arrays of the same type, which
// move bytes: every bit is kept, NaN payloads included. Leaves are not copied (their tensors live on
// anyway), and neither are values whose node has a symbolic shape.

/** The most elements a value kept as its bits may have. */
const KEPT_MAX = 256;
/** Elements per chunk (a power of two). */
const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
/** Places stay small integers: a store holds at most this many elements per dtype. */
const MAX_PLACE = 2 ** 29;

/**
 * A forward's kept values as bits (Note [kept values]). A value's place is a number: its first
 * element's index in its dtype's chunks, times two, plus one for float64.
 */
export class KeptValues {
  private readonly f32: Float32Array<ArrayBuffer>[] = [];
  private readonly f64: Float64Array<ArrayBuffer>[] = [];
  private used32 = CHUNK;
  private used64 = CHUNK;

  /** Copies the bits of `t`, the value of a node of shape `shape`; its place, or -1 if not taken. */
  put(t: Tensor, shape: Shape): number {
    const n = t.size;
    if (n > KEPT_MAX || !isConcrete(shape)) return -1;
    if (t.dtype === 'float32') {
      if (this.used32 + n > CHUNK) {
        if (this.f32.length * CHUNK >= MAX_PLACE) return -1;
        this.f32.push(new Float32Array(CHUNK));
        this.used32 = 0;
      }
      const last = this.f32.length - 1;
      this.f32[last]!.set(t.data as Float32Array, this.used32);
      const place = (last * CHUNK + this.used32) * 2;
      this.used32 += n;
      return place;
    }
    if (this.used64 + n > CHUNK) {
      if (this.f64.length * CHUNK >= MAX_PLACE) return -1;
      this.f64.push(new Float64Array(CHUNK));
      this.used64 = 0;
    }
    const last = this.f64.length - 1;
    this.f64[last]!.set(t.data as Float64Array, this.used64);
    const place = (last * CHUNK + this.used64) * 2 + 1;
    this.used64 += n;
    return place;
  }

  /** A new tensor of `shape` (its node's, which `put` was given) with the bits kept at `place`. */
  get(place: number, shape: ConcreteShape): Tensor {
    const n = sizeOf(shape);
    const at = place >>> 1;
    const chunk = at >>> CHUNK_BITS;
    const from = at & (CHUNK - 1);
    if ((place & 1) === 0) return new Tensor('float32', shape, this.f32[chunk]!.slice(from, from + n));
    return new Tensor('float64', shape, this.f64[chunk]!.slice(from, from + n));
  }

  /** The bytes of the value kept at `place`, of shape `shape`. */
  bytes(place: number, shape: ConcreteShape): number {
    return sizeOf(shape) * ((place & 1) === 0 ? 4 : 8);
  }
}
