// Kernels over sliding windows of NHWC images [N, H, W, C]: the patches of a convolution (im2col)
// and their adjoint (col2im), max and average pooling and their adjoints. Data movement and sums
// only; a convolution's multiply-adds are the matmul kernel's (src/ops/conv2d.ts). Every sum here
// accumulates in float64 in a fixed loop order and rounds once, so each kernel is a deterministic
// function of its inputs, like the others (see Kernels).
import { ShapeError } from '../errors.ts';
import { allocateUninit, Tensor } from './tensor.ts';

/** A window along height and width: its extent, step, zero padding on both sides, and dilation. */
export interface Window2d {
  readonly kernel: readonly number[];
  readonly stride: readonly number[];
  readonly padding: readonly number[];
  readonly dilation: readonly number[];
}

/** A pooling window: no dilation. */
export type PoolWindow = Omit<Window2d, 'dilation'>;

/** Output positions along one axis: floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1. */
export function windowCount(size: number, kernel: number, stride: number, padding: number, dilation = 1) {
  return Math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1;
}

/** The sizes a windowed kernel loops over; a window that fits nowhere throws (the ops' shape rules refuse it first). */
interface Geometry {
  n: number;
  h: number;
  w: number;
  c: number;
  oh: number;
  ow: number;
}

function geometry(shape: readonly number[], win: Window2d, kernel: string): Geometry {
  const [n, h, w, c] = shape as [number, number, number, number];
  const oh = windowCount(h, win.kernel[0]!, win.stride[0]!, win.padding[0]!, win.dilation[0]);
  const ow = windowCount(w, win.kernel[1]!, win.stride[1]!, win.padding[1]!, win.dilation[1]);
  if (shape.length !== 4 || oh < 1 || ow < 1) {
    throw new ShapeError(`${kernel}: no window fits an image of shape [${shape.join(',')}]`, { op: kernel });
  }
  return { n, h, w, c, oh, ow };
}

type Data = Float32Array | Float64Array;

/**
 * For each of `count` output positions o along one axis, the kernel taps [lo, hi) that land inside
 * the image (o * stride - padding + tap * dilation in [0, size)), at [2o] and [2o + 1]: the loops
 * below skip the padding by range instead of testing every tap.
 */
function insideTaps(
  count: number,
  size: number,
  kernel: number,
  stride: number,
  padding: number,
  dilation = 1,
) {
  const taps = new Int32Array(2 * count);
  for (let o = 0; o < count; o++) {
    const first = o * stride - padding;
    const lo = Math.max(0, Math.ceil(-first / dilation));
    taps[2 * o] = lo;
    taps[2 * o + 1] = Math.max(lo, Math.min(kernel, Math.ceil((size - first) / dilation)));
  }
  return taps;
}

// Note [patch loops]
// im2col and col2im walk every element of every patch in the order of the patch matrix: group,
// image, output row, output column, kernel row, kernel column, channel of the group. im2col copies
// image elements into the patches, zeros in the padding; col2im adds each patch element into its
// pixel, padding dropped, so each pixel receives its terms in that order (a float64 sum, rounded
// once: the order fixes the bits). They are two loop nests, not one with a direction flag, so each
// stays monomorphic, and the padding is skipped by tap ranges (insideTaps): a kernel row outside the
// image is a run of zeros, and inside it only the taps [lo, hi) of the kernel columns are read. With
// dilation 1 and one group those taps are one run of contiguous pixels, copied as one. On LeNet-5's
// first convolution (batch 128, 5x5, padding 2, one channel) im2col took a fifth of the time of the
// single nest that tested every tap.

/** What both patch loops derive from the geometry: the window's numbers, the taps inside the image per output row and column. */
function patchLayout(g: Geometry, win: Window2d, groups: number) {
  const { n, h, w, c, oh, ow } = g;
  const [kh, kw] = win.kernel as [number, number];
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const [dh, dw] = win.dilation as [number, number];
  const cg = c / groups;
  const rowTaps = insideTaps(oh, h, kh, sh, ph, dh);
  const colTaps = insideTaps(ow, w, kw, sw, pw, dw);
  const contiguous = dw === 1 && groups === 1;
  const rowLength = kw * cg;
  return { n, h, w, c, oh, ow, kh, sh, sw, ph, pw, dh, dw, cg, rowTaps, colTaps, contiguous, rowLength };
}

/** The patches of `image` written into `cols` (Note [patch loops]). */
function patchesOf(g: Geometry, win: Window2d, groups: number, image: Data, cols: Data): void {
  const { n, h, w, c, oh, ow, kh, sh, sw, ph, pw, dh, dw, cg, rowTaps, colTaps, contiguous, rowLength } =
    patchLayout(g, win, groups);
  let dst = 0;
  for (let group = 0; group < groups; group++) {
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < oh; i++) {
        const [pLo, pHi] = [rowTaps[2 * i]!, rowTaps[2 * i + 1]!];
        for (let j = 0; j < ow; j++) {
          const [qLo, qHi] = [colTaps[2 * j]!, colTaps[2 * j + 1]!];
          for (let p = 0; p < kh; p++, dst += rowLength) {
            const end = dst + rowLength;
            let t = dst;
            if (p < pLo || p >= pHi) {
              while (t < end) cols[t++] = 0;
              continue;
            }
            // The pixel of kernel column 0 (left of the image when qLo > 0: only columns from qLo are read).
            const at = ((b * h + i * sh - ph + p * dh) * w + j * sw - pw) * c + group * cg;
            for (const zeros = dst + qLo * cg; t < zeros; ) cols[t++] = 0;
            if (contiguous) {
              for (let s = at + qLo * c, stop = dst + qHi * cg; t < stop; ) cols[t++] = image[s++]!;
            } else {
              for (let q = qLo; q < qHi; q++) {
                const s = at + q * dw * c;
                for (let u = 0; u < cg; u++) cols[t++] = image[s + u]!;
              }
            }
            while (t < end) cols[t++] = 0;
          }
        }
      }
    }
  }
}

/** Every element of the patches `cols` added into its pixel of `image`, in the patch order (Note [patch loops]). */
function addPatches(g: Geometry, win: Window2d, groups: number, cols: Data, image: Float64Array): void {
  const { n, h, w, c, oh, ow, kh, sh, sw, ph, pw, dh, dw, cg, rowTaps, colTaps, contiguous, rowLength } =
    patchLayout(g, win, groups);
  let dst = 0;
  for (let group = 0; group < groups; group++) {
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < oh; i++) {
        const [pLo, pHi] = [rowTaps[2 * i]!, rowTaps[2 * i + 1]!];
        for (let j = 0; j < ow; j++) {
          const [qLo, qHi] = [colTaps[2 * j]!, colTaps[2 * j + 1]!];
          for (let p = 0; p < kh; p++, dst += rowLength) {
            if (p < pLo || p >= pHi) continue;
            const at = ((b * h + i * sh - ph + p * dh) * w + j * sw - pw) * c + group * cg;
            let t = dst + qLo * cg;
            if (contiguous) {
              for (let s = at + qLo * c, stop = dst + qHi * cg; t < stop; s++)
                image[s] = image[s]! + cols[t++]!;
            } else {
              for (let q = qLo; q < qHi; q++) {
                const s = at + q * dw * c;
                for (let u = 0; u < cg; u++) image[s + u] = image[s + u]! + cols[t++]!;
              }
            }
          }
        }
      }
    }
  }
}

/**
 * The patches of x [N, H, W, C] as matrices [groups, N*OH*OW, KH*KW*C/groups]: row r of group g
 * holds output position r's window over the channels of group g, kernel row by kernel row, zeros in
 * the padding. In NHWC each window row is runs of contiguous channels (Note [conv2d layout], src/ops/conv2d.ts).
 */
export function im2col(x: Tensor, win: Window2d, groups: number): Tensor {
  const g = geometry(x.shape, win, 'im2col');
  const k = win.kernel[0]! * win.kernel[1]! * (g.c / groups);
  const m = g.n * g.oh * g.ow;
  // Uninit: the walk writes every element of every patch.
  const o = allocateUninit(x.dtype, groups * m * k);
  patchesOf(g, win, groups, x.data, o);
  return new Tensor(x.dtype, [groups, m, k], o);
}

/**
 * The adjoint of im2col: every element of the patches `cols` [groups, N*OH*OW, K] added back to its
 * pixel of an image of `shape` [N, H, W, C] (padding dropped), in the patch order, in float64.
 */
export function col2im(cols: Tensor, win: Window2d, groups: number, shape: readonly number[]): Tensor {
  const g = geometry(shape, win, 'col2im');
  const acc = new Float64Array(g.n * g.h * g.w * g.c);
  addPatches(g, win, groups, cols.data, acc);
  return rounded(cols.dtype, [...shape], acc);
}

function rounded(dtype: Tensor['dtype'], shape: number[], acc: Float64Array): Tensor {
  // Uninit: set writes all of it.
  const o = allocateUninit(dtype, acc.length);
  o.set(acc);
  return new Tensor(dtype, shape, o);
}

const poolWindow = (win: PoolWindow): Window2d => ({ ...win, dilation: [1, 1] });

/**
 * Calls `f(out, base)` for each output pixel of a pool and each in-image pixel of its window, in
 * the order image, output row, output column, kernel row, kernel column: `out` and `base` are the
 * offsets of the output pixel and the input pixel (their channel 0).
 */
function forEachWindowPixel(g: Geometry, win: Window2d, f: (out: number, base: number) => void): void {
  const { n, h, w, c, oh, ow } = g;
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const rowTaps = insideTaps(oh, h, win.kernel[0]!, sh, ph);
  const colTaps = insideTaps(ow, w, win.kernel[1]!, sw, pw);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const out = ((b * oh + i) * ow + j) * c;
        for (let p = rowTaps[2 * i]!; p < rowTaps[2 * i + 1]!; p++) {
          const row = (b * h + i * sh - ph + p) * w + j * sw - pw;
          for (let q = colTaps[2 * j]!; q < colTaps[2 * j + 1]!; q++) f(out, (row + q) * c);
        }
      }
    }
  }
}

/**
 * For each output element of a max pool over x, the index in x of its window's maximum: the first
 * in window order among equal ones, and the first NaN if there is one (NaN propagates, as in the max
 * reduction). Padding is never picked; the shape rule keeps padding below the kernel, so every
 * window holds a pixel of the image. The loops of forEachWindowPixel written out: the hottest pool
 * loop, called with no closure.
 */
function maxPositions(x: Tensor, win: Window2d): { positions: Int32Array; shape: number[] } {
  const g = geometry(x.shape, win, 'maxPool2d');
  const { n, h, w, c, oh, ow } = g;
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const rowTaps = insideTaps(oh, h, win.kernel[0]!, sh, ph);
  const colTaps = insideTaps(ow, w, win.kernel[1]!, sw, pw);
  // Uninit: every output element gets its window's position (each window holds a pixel).
  const positions = new Int32Array(n * oh * ow * c);
  const a = x.data;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      const [pLo, pHi] = [rowTaps[2 * i]!, rowTaps[2 * i + 1]!];
      for (let j = 0; j < ow; j++) {
        const [qLo, qHi] = [colTaps[2 * j]!, colTaps[2 * j + 1]!];
        const out = ((b * oh + i) * ow + j) * c;
        const corner = (b * h + i * sh - ph) * w + j * sw - pw;
        for (let ch = 0; ch < c; ch++) {
          let at = -1;
          let best = 0;
          for (let p = pLo; p < pHi; p++) {
            for (let q = qLo, k = (corner + p * w + q) * c + ch; q < qHi; q++, k += c) {
              const v = a[k]!;
              if (at < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
                at = k;
                best = v;
              }
            }
          }
          positions[out + ch] = at;
        }
      }
    }
  }
  return { positions, shape: [n, oh, ow, c] };
}

/** Max pooling of x [N, H, W, C]: [N, OH, OW, C]. */
export function maxPool2d(x: Tensor, win: PoolWindow): Tensor {
  return pickAt(x, x, poolWindow(win));
}

/** `from` at the maximum of each window of x (x itself for maxPool2d). */
function pickAt(x: Tensor, from: Tensor, win: Window2d): Tensor {
  const { positions, shape } = maxPositions(x, win);
  // Uninit: one value per position.
  const o = allocateUninit(from.dtype, positions.length);
  const a = from.data;
  for (let i = 0; i < positions.length; i++) o[i] = a[positions[i]!]!;
  return new Tensor(from.dtype, shape, o);
}

/**
 * The adjoint of max pooling at x: each element of g [N, OH, OW, C] added to the pixel of x that was
 * its window's maximum, in output order, in float64.
 */
export function maxPool2dGrad(x: Tensor, g: Tensor, win: PoolWindow): Tensor {
  const { positions } = maxPositions(x, poolWindow(win));
  const acc = new Float64Array(x.size);
  const a = g.data;
  for (let i = 0; i < positions.length; i++) acc[positions[i]!] = acc[positions[i]!]! + a[i]!;
  return rounded(g.dtype, [...x.shape], acc);
}

/** h [N, H, W, C] at the maximum of each window of x: the adjoint of maxPool2dGrad in g. */
export function maxPool2dSelect(x: Tensor, h: Tensor, win: PoolWindow): Tensor {
  return pickAt(x, h, poolWindow(win));
}

/**
 * Average pooling: the sum of each window's pixels over the window's area KH*KW, padding counted as
 * zeros (PyTorch's count_include_pad), so the divisor is the same for every window.
 */
export function avgPool2d(x: Tensor, win: PoolWindow): Tensor {
  const full = poolWindow(win);
  const g = geometry(x.shape, full, 'avgPool2d');
  const acc = new Float64Array(g.n * g.oh * g.ow * g.c);
  const a = x.data;
  forEachWindowPixel(g, full, (out, base) => {
    for (let ch = 0; ch < g.c; ch++) acc[out + ch] = acc[out + ch]! + a[base + ch]!;
  });
  const area = win.kernel[0]! * win.kernel[1]!;
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / area;
  return rounded(x.dtype, [g.n, g.oh, g.ow, g.c], acc);
}

/** The adjoint of average pooling into an image of `shape`: each pixel's windows' g summed, over the area. */
export function avgPool2dGrad(g: Tensor, win: PoolWindow, shape: readonly number[]): Tensor {
  const full = poolWindow(win);
  const geo = geometry(shape, full, 'avgPool2dGrad');
  const acc = new Float64Array(geo.n * geo.h * geo.w * geo.c);
  const a = g.data;
  forEachWindowPixel(geo, full, (out, base) => {
    for (let ch = 0; ch < geo.c; ch++) acc[base + ch] = acc[base + ch]! + a[out + ch]!;
  });
  const area = win.kernel[0]! * win.kernel[1]!;
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / area;
  return rounded(g.dtype, [...shape], acc);
}
