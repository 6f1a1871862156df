import { allocateUninit, Tensor } from '../tensor.ts';
import { type PoolWindow, type Window2d, windowCount } from '../window.ts';
import type { WasmArena } from './instance.ts';

// The convolutions of window.wat (Note [implicit patches]): the same values as im2col around the
// wasm matmul, without the patch matrix. They take float32, one group and no dilation along the
// width (a window row is then one run of contiguous floats); for anything else they return null and
// the caller composes im2col and the matmul.

const ceil = (x: number, to: number) => Math.ceil(x / to) * to;

/** An image [N, H, W, C] in wasm memory with its padding made real: where it starts, and its steps in bytes. */
interface PaddedImage {
  /** The byte offset of the padded image. */
  at: number;
  /** Bytes from one image to the next, and from one padded row to the next. */
  imageStep: number;
  rowBytes: number;
}

/**
 * The geometry of a convolution of an image [N, H, W, C] over `win`, or null when these kernels do
 * not take it (`a` and `b` are its two operands).
 */
function geometry(image: readonly number[], a: Tensor, b: Tensor, win: Window2d, groups: number) {
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || groups !== 1 || win.dilation[1] !== 1) return null;
  const [n, h, w, c] = image as [number, number, number, number];
  const [kh, kw] = win.kernel as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const oh = windowCount(h, kh, win.stride[0]!, ph, win.dilation[0]);
  const ow = windowCount(w, kw, win.stride[1]!, pw, 1);
  const m = n * oh * ow;
  if (m === 0 || c === 0 || oh < 1 || ow < 1) return null;
  const [hp, wp] = [h + 2 * ph, w + 2 * pw];
  return { n, h, w, c, kh, kw, ph, pw, oh, ow, m, hp, wp, padded: ph > 0 || pw > 0 };
}

type Geometry = NonNullable<ReturnType<typeof geometry>>;

/** The padded image's bytes (0 when there is no padding: the image is used in place). */
const paddedBytes = (g: Geometry) => (g.padded ? g.n * g.hp * g.wp * g.c * 4 : 0);

/** Copies x to `px` and pads it into `pp` when it has padding. */
function placeImage(arena: WasmArena, g: Geometry, x: Tensor, px: number, pp: number): PaddedImage {
  arena.f32(px, x.size).set(x.data);
  const rowBytes = g.wp * g.c * 4;
  if (g.padded) arena.exports.padImage(px, pp, g.n, g.h, g.w, g.c, g.ph, g.pw);
  return { at: g.padded ? pp : px, imageStep: g.hp * rowBytes, rowBytes };
}

/** The window corners of every output pixel at `pb`, `count` entries (the last one repeated). */
function bases(arena: WasmArena, g: Geometry, win: Window2d, img: PaddedImage, pb: number, count: number) {
  const [sh, sw] = win.stride as [number, number];
  arena.exports.patchBases(
    pb,
    img.at,
    g.m,
    count,
    g.oh,
    g.ow,
    img.imageStep,
    sh * img.rowBytes,
    sw * g.c * 4,
  );
}

/** conv2d of x [N, H, W, C] with w [KH, KW, C, F]: [N, OH, OW, F], or null (see above). */
export function wasmConv2d(
  arena: WasmArena,
  x: Tensor,
  w: Tensor,
  win: Window2d,
  groups: number,
): Tensor | null {
  const g = geometry(x.shape, x, w, win, groups);
  if (g === null) return null;
  const f = w.shape[3]!;
  const depth = g.kh * g.kw * g.c;
  const mPad = ceil(g.m, 4);
  // The output leaves room for the 4-pixel tile's padding rows and the last row's spill (window.wat).
  const regions = arena.layout(
    x.bytes,
    paddedBytes(g),
    w.bytes,
    depth * ceil(f, 8) * 4,
    mPad * 4,
    (mPad * f + 8) * 4,
  );
  if (regions === null) return null;
  const [px, pp, pw, pack, pb, po] = regions as [number, number, number, number, number, number];
  const img = placeImage(arena, g, x, px, pp);
  arena.f32(pw, w.size).set(w.data);
  bases(arena, g, win, img, pb, mPad);
  arena.exports.conv2d(pb, g.m, pw, f, pack, po, g.kh, g.kw * g.c * 4, win.dilation[0]! * img.rowBytes);
  return new Tensor('float32', [g.n, g.oh, g.ow, f], arena.copyOut(po, g.m * f));
}

/**
 * conv2d's image gradient from gy [N, OH, OW, F] and w [KH, KW, C, F] into an image of `shape`
 * [N, H, W, C], or null (see above): col2im(G W^T) with float64 sums, a tile of G W^T at a time.
 */
export function wasmConv2dInputGrad(
  arena: WasmArena,
  gy: Tensor,
  w: Tensor,
  win: Window2d,
  groups: number,
  shape: readonly number[],
): Tensor | null {
  const g = geometry(shape, gy, w, win, groups);
  if (g === null) return null;
  const f = w.shape[3]!;
  const depth = g.kh * g.kw * g.c;
  const kPad = ceil(depth, 8);
  const accBytes = g.n * g.hp * g.wp * g.c * 8;
  // The output takes the last row's vector spill in its alignment slack (unpadImage).
  const regions = arena.layout(
    gy.bytes,
    w.bytes,
    kPad * f * 4,
    4 * kPad * 4,
    g.m * 4,
    accBytes,
    g.n * g.h * g.w * g.c * 4,
  );
  if (regions === null) return null;
  const [pg, pw, pack, tile, pb, acc, po] = regions as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  arena.f32(pg, gy.size).set(gy.data);
  arena.f32(pw, w.size).set(w.data);
  const rowBytes = g.wp * g.c * 8;
  const [sh, sw] = win.stride as [number, number];
  arena.exports.patchBases(pb, acc, g.m, g.m, g.oh, g.ow, g.hp * rowBytes, sh * rowBytes, sw * g.c * 8);
  // biome-ignore format: one argument per line reads worse
  arena.exports.conv2dInputGrad(pg, g.m, f, pw, depth, pack, tile, pb, acc, accBytes, g.kh, g.kw * g.c,
    win.dilation[0]! * rowBytes);
  arena.exports.unpadImage(acc, po, g.n, g.h, g.w, g.c, g.ph, g.pw);
  return new Tensor('float32', [...shape], arena.copyOut(po, g.n * g.h * g.w * g.c));
}

/** conv2d's filter gradient from x [N, H, W, C] and gy [N, OH, OW, F]: [KH, KW, C, F], or null (see above). */
export function wasmConv2dWeightGrad(
  arena: WasmArena,
  x: Tensor,
  gy: Tensor,
  win: Window2d,
  groups: number,
): Tensor | null {
  const g = geometry(x.shape, x, gy, win, groups);
  if (g === null) return null;
  const f = gy.shape[3]!;
  const depth = g.kh * g.kw * g.c;
  const [kPad, nPad] = [ceil(depth, 4), ceil(f, 8)];
  // G's rows are read 8 floats at a time: the region's alignment slack covers the last one's overrun.
  const regions = arena.layout(x.bytes, paddedBytes(g), gy.bytes, g.m * 4, kPad * 4, kPad * nPad * 4);
  if (regions === null) return null;
  const [px, pp, pg, pb, poff, po] = regions as [number, number, number, number, number, number];
  const img = placeImage(arena, g, x, px, pp);
  arena.f32(pg, gy.size).set(gy.data);
  bases(arena, g, win, img, pb, g.m);
  // Patch column (p, t) is t floats into kernel row p of the window; the padding rows read column 0.
  const offsets = arena.i32(poff, kPad);
  const run = g.kw * g.c;
  const rowStep = win.dilation[0]! * img.rowBytes;
  for (let p = 0; p < g.kh; p++) for (let t = 0; t < run; t++) offsets[p * run + t] = p * rowStep + t * 4;
  offsets.fill(0, depth);
  arena.exports.conv2dWeightGrad(pb, g.m, g.oh * g.ow, poff, depth, pg, f, po);
  const padded = arena.f32(po, kPad * nPad);
  // Uninit: every (k, j) below is written.
  const out = allocateUninit('float32', depth * f);
  for (let k = 0; k < depth; k++) for (let j = 0; j < f; j++) out[k * f + j] = padded[k * nPad + j]!;
  return new Tensor('float32', [g.kh, g.kw, g.c, f], out);
}

/** A pool's sizes, as maxPool and maxPoolGrad take them after the two buffers, or null for an empty pool. */
function poolArgs(x: Tensor, win: PoolWindow) {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const [kh, kw] = win.kernel as [number, number];
  const [sh, sw] = win.stride as [number, number];
  const [ph, pw] = win.padding as [number, number];
  const [oh, ow] = [windowCount(h, kh, sh, ph), windowCount(w, kw, sw, pw)];
  if (x.size === 0 || oh < 1 || ow < 1) return null;
  return [n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw] as const;
}

/** A pool's image and output sizes [N, H, W, C, OH, OW], the first of its arguments. */
const sizes = (args: NonNullable<ReturnType<typeof poolArgs>>) => args.slice(0, 6) as unknown as Sizes;
type Sizes = [number, number, number, number, number, number];

/** 2x2 windows, stride 2, no padding: the pool the wasm module has written out. */
const halving = (win: PoolWindow) =>
  [...win.kernel, ...win.stride].every((v) => v === 2) && win.padding[0] === 0 && win.padding[1] === 0;

/** Max pooling of x [N, H, W, C] (float32): [N, OH, OW, C], or null for what these kernels do not take. */
export function wasmMaxPool2d(arena: WasmArena, x: Tensor, win: PoolWindow): Tensor | null {
  const args = poolArgs(x, win);
  if (x.dtype !== 'float32' || args === null) return null;
  const [n, , , c, oh, ow] = args;
  const size = n * oh * ow * c;
  // The last pixel's vector spill lands in the output's alignment slack.
  const regions = arena.layout(x.bytes, size * 4);
  if (regions === null) return null;
  const [px, po] = regions as [number, number];
  arena.f32(px, x.size).set(x.data);
  if (halving(win)) arena.exports.maxPool2x2(px, po, ...sizes(args));
  else arena.exports.maxPool(px, po, ...args);
  return new Tensor('float32', [n, oh, ow, c], arena.copyOut(po, size));
}

/**
 * g added at the maximum of each window of x: maxPool2dGrad, for windows that do not overlap (each
 * pixel then takes one value or none); null for anything else.
 */
export function wasmMaxPool2dGrad(arena: WasmArena, x: Tensor, g: Tensor, win: PoolWindow): Tensor | null {
  const args = poolArgs(x, win);
  const overlap = win.stride[0]! < win.kernel[0]! || win.stride[1]! < win.kernel[1]!;
  if (x.dtype !== 'float32' || g.dtype !== 'float32' || args === null || overlap) return null;
  const regions = arena.layout(x.bytes, g.bytes, x.bytes);
  if (regions === null) return null;
  const [px, pg, po] = regions as [number, number, number];
  arena.f32(px, x.size).set(x.data);
  arena.f32(pg, g.size).set(g.data);
  if (halving(win)) arena.exports.maxPool2x2Grad(px, pg, po, x.bytes, ...sizes(args));
  else arena.exports.maxPoolGrad(px, pg, po, x.bytes, ...args);
  return new Tensor('float32', [...x.shape], arena.copyOut(po, x.size));
}
