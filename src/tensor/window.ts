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

// Note [window loops]
// im2col and col2im are plain loops over the patch matrix, the window's bounds checked once per
// kernel row and once per pixel, with no callback or library call per pixel: on small images of few
// channels (a digit's 1, LeNet's 6) a run is a few elements, and the overhead per run is what costs,
// not the copies. With one group and no dilation along the width a kernel row is one run of the
// image, copied in one loop. col2im still adds in the patch order, so its sums are the same bits
// whichever way the loops are written.

/**
 * im2col's loop nest, over every element of every patch in the order of the patch matrix: group,
 * image, output row, output column, kernel row, kernel column, channel of the group. Copies image
 * elements into `cols`, zeros in the padding.
 */
function copyPatches(g: Geometry, win: Window2d, groups: number, image: Data, cols: Data) {
  const { n, h, w, c, oh, ow } = g;
  const [kh, kw] = win.kernel as [number, number];
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const [dh, dw] = win.dilation as [number, number];
  const cg = c / groups;
  const rowLength = kw * cg;
  // One group, no dilation along the width: a kernel row's pixels are adjacent in the image.
  const contiguous = groups === 1 && dw === 1;
  let dst = 0;
  for (let group = 0; group < groups; group++) {
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          for (let p = 0; p < kh; p++) {
            const ih = i * sh - ph + p * dh;
            if (ih < 0 || ih >= h) {
              for (const end = dst + rowLength; dst < end; dst++) cols[dst] = 0;
              continue;
            }
            const row = (b * h + ih) * w;
            const left = j * sw - pw;
            if (contiguous) {
              // The kernel row's pixels inside the image are one run of the image: zeros, a copy, zeros.
              const rowEnd = dst + rowLength;
              const inside = Math.max(0, -left);
              const zerosEnd = dst + inside * c;
              for (; dst < zerosEnd; dst++) cols[dst] = 0;
              const copyEnd = dst + Math.max(0, Math.min(kw, w - left) - inside) * c;
              for (let src = (row + left + inside) * c; dst < copyEnd; dst++, src++) cols[dst] = image[src]!;
              for (; dst < rowEnd; dst++) cols[dst] = 0;
              continue;
            }
            for (let q = 0; q < kw; q++) {
              const iw = left + q * dw;
              const end = dst + cg;
              if (iw < 0 || iw >= w) for (; dst < end; dst++) cols[dst] = 0;
              else
                for (let src = (row + iw) * c + group * cg; dst < end; dst++, src++) cols[dst] = image[src]!;
            }
          }
        }
      }
    }
  }
}

/**
 * col2im's loop nest, the same order as `copyPatches`: adds each element of `cols` into its pixel of
 * the float64 accumulator `image`, padding dropped.
 */
function addPatches(g: Geometry, win: Window2d, groups: number, image: Float64Array, cols: Data) {
  const { n, h, w, c, oh, ow } = g;
  const [kh, kw] = win.kernel as [number, number];
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const [dh, dw] = win.dilation as [number, number];
  const cg = c / groups;
  const rowLength = kw * cg;
  let from = 0;
  for (let group = 0; group < groups; group++) {
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          for (let p = 0; p < kh; p++) {
            const ih = i * sh - ph + p * dh;
            if (ih < 0 || ih >= h) {
              from += rowLength;
              continue;
            }
            const row = (b * h + ih) * w;
            for (let q = 0; q < kw; q++) {
              const iw = j * sw - pw + q * dw;
              const end = from + cg;
              if (iw < 0 || iw >= w) from = end;
              else
                for (let dst = (row + iw) * c + group * cg; from < end; from++, dst++)
                  image[dst] = image[dst]! + cols[from]!;
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
  copyPatches(g, win, groups, x.data, o);
  return new Tensor(x.dtype, [groups, m, k], o);
}

/**
 * The adjoint of im2col: every element of the patches `cols` [groups, N*OH*OW, K] added back to its
 * pixel of an image of `shape` [N, H, W, C] (padding dropped), in the patch order, in float64.
 */
export function col2im(cols: Tensor, win: Window2d, groups: number, shape: readonly number[]): Tensor {
  const g = geometry(shape, win, 'col2im');
  const acc = new Float64Array(g.n * g.h * g.w * g.c);
  addPatches(g, win, groups, acc, cols.data);
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
  const [kh, kw] = win.kernel as [number, number];
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const out = ((b * oh + i) * ow + j) * c;
        for (let p = 0; p < kh; p++) {
          const ih = i * sh - ph + p;
          if (ih < 0 || ih >= h) continue;
          for (let q = 0; q < kw; q++) {
            const iw = j * sw - pw + q;
            if (iw >= 0 && iw < w) f(out, ((b * h + ih) * w + iw) * c);
          }
        }
      }
    }
  }
}

/**
 * For each output element of a max pool over x, the index in x of its window's maximum: the first
 * in window order among equal ones, and the first NaN if there is one (NaN propagates, as in the max
 * reduction). Padding is never picked; the shape rule keeps padding below the kernel, so every
 * window holds a pixel of the image.
 */
function maxPositions(x: Tensor, win: Window2d): { positions: Int32Array; shape: number[] } {
  const g = geometry(x.shape, win, 'maxPool2d');
  const positions = new Int32Array(g.n * g.oh * g.ow * g.c).fill(-1);
  const a = x.data;
  forEachWindowPixel(g, win, (out, base) => {
    for (let ch = 0; ch < g.c; ch++) {
      const at = positions[out + ch]!;
      const v = a[base + ch]!;
      const best = at < 0 ? 0 : a[at]!;
      if (at < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) positions[out + ch] = base + ch;
    }
  });
  return { positions, shape: [g.n, g.oh, g.ow, g.c] };
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
