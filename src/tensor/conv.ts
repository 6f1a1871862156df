// The three convolution kernels (conv2d and its two gradient halves) as im2col or col2im around one
// matmul each, over any set of kernels: the TypeScript kernels run them so, and the wasm kernels for
// the shapes their own convolution kernels do not take. Layout: Note [conv2d layout] (src/ops/conv2d.ts).
import type { Kernels } from './kernels.ts';
import { type Tensor, withShape } from './tensor.ts';
import { type Window2d, windowCount } from './window.ts';

/** The kernels a convolution is made of. */
export type PatchKernels = Pick<Kernels, 'im2col' | 'col2im' | 'matmul' | 'transpose'>;

/** [rows, groups * n] as [groups, rows, n]: the groups leading, for a batched matmul. */
function toGroups(k: PatchKernels, t: Tensor, rows: number, groups: number): Tensor {
  return k.transpose(withShape(t, [rows, groups, t.size / rows / groups]), [1, 0, 2]);
}

/** [groups, rows, n] back to [rows, groups * n]. */
function fromGroups(k: PatchKernels, t: Tensor): Tensor {
  const [groups, rows, n] = t.shape as [number, number, number];
  return withShape(k.transpose(t, [1, 0, 2]), [rows, groups * n]);
}

/** conv2d: im2col(x) [M, K] times the filter as [K, F], the product already the NHWC output. */
export function conv2dByPatches(
  k: PatchKernels,
  x: Tensor,
  w: Tensor,
  win: Window2d,
  groups: number,
): Tensor {
  const [kh, kw, cg, f] = w.shape as [number, number, number, number];
  const cols = k.im2col(x, win, groups);
  const [m, depth] = [cols.shape[1]!, kh * kw * cg];
  const out =
    groups === 1
      ? k.matmul(withShape(cols, [m, depth]), withShape(w, [depth, f]), false, false)
      : fromGroups(k, k.matmul(cols, toGroups(k, withShape(w, [depth, f]), depth, groups), false, false));
  const oh = windowCount(x.shape[1]!, kh, win.stride[0]!, win.padding[0]!, win.dilation[0]);
  const ow = windowCount(x.shape[2]!, kw, win.stride[1]!, win.padding[1]!, win.dilation[1]);
  return withShape(out, [x.shape[0]!, oh, ow, f]);
}

/** conv2d's gradient in its image: col2im(G W^T) into an image of `shape` [N, H, W, C]. */
export function conv2dInputGradByPatches(
  k: PatchKernels,
  g: Tensor,
  w: Tensor,
  win: Window2d,
  groups: number,
  shape: readonly number[],
): Tensor {
  const [n, oh, ow, f] = g.shape as [number, number, number, number];
  const [kh, kw, cg] = w.shape as [number, number, number, number];
  const [m, depth] = [n * oh * ow, kh * kw * cg];
  const cols =
    groups === 1
      ? withShape(k.matmul(withShape(g, [m, f]), withShape(w, [depth, f]), false, true), [1, m, depth])
      : k.matmul(toGroups(k, g, m, groups), toGroups(k, w, depth, groups), false, true);
  return k.col2im(cols, win, groups, shape);
}

/** conv2d's gradient in its filter: im2col(x)^T G as a filter [KH, KW, C/groups, F]. */
export function conv2dWeightGradByPatches(
  k: PatchKernels,
  x: Tensor,
  g: Tensor,
  win: Window2d,
  groups: number,
): Tensor {
  const [kh, kw] = win.kernel as [number, number];
  const cols = k.im2col(x, win, groups);
  const [m, depth] = [cols.shape[1]!, cols.shape[2]!];
  const f = g.shape[3]!;
  const dw =
    groups === 1
      ? k.matmul(withShape(cols, [m, depth]), withShape(g, [m, f]), true, false)
      : fromGroups(k, k.matmul(cols, toGroups(k, g, m, groups), true, false));
  return withShape(dw, [kh, kw, depth / (kh * kw), f]);
}
