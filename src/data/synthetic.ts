import { Rng } from '../tensor/rng.ts';
import { type DType, Tensor } from '../tensor/tensor.ts';

/** A synthetic labelled set (`spirals`, `blobs`): examples and their classes. */
export interface LabeledSet {
  /** [N, features] */
  x: Tensor;
  /** [N] class indices (integer values) */
  y: Tensor;
  /** The number of classes. */
  classes: number;
}

/**
 * Two (or more) interleaved spirals in the plane, a classic set no linear model separates. Seeded:
 * the same seed gives the same points.
 */
export function spirals(
  options: { perClass?: number; classes?: number; noise?: number; seed?: number; dtype?: DType } = {},
): LabeledSet {
  const perClass = options.perClass ?? 200;
  const classes = options.classes ?? 2;
  const noise = options.noise ?? 0.1;
  const rng = new Rng(options.seed ?? 0);
  const dtype = options.dtype ?? 'float32';
  const n = perClass * classes;
  const x = new Tensor(
    dtype,
    [n, 2],
    dtype === 'float32' ? new Float32Array(n * 2) : new Float64Array(n * 2),
  );
  const y = new Tensor(dtype, [n], dtype === 'float32' ? new Float32Array(n) : new Float64Array(n));
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < perClass; i++) {
      const k = c * perClass + i;
      const r = (i + 1) / perClass;
      const theta = (c * 2 * Math.PI) / classes + r * 1.75 * 2 * Math.PI;
      x.data[2 * k] = r * Math.cos(theta) + rng.normal(0, noise * r);
      x.data[2 * k + 1] = r * Math.sin(theta) + rng.normal(0, noise * r);
      y.data[k] = c;
    }
  }
  return { x, y, classes };
}

/** Gaussian blobs around evenly spaced centres. */
export function blobs(
  options: { perClass?: number; classes?: number; features?: number; spread?: number; seed?: number } = {},
): LabeledSet {
  const perClass = options.perClass ?? 100;
  const classes = options.classes ?? 3;
  const features = options.features ?? 2;
  const spread = options.spread ?? 0.3;
  const rng = new Rng(options.seed ?? 0);
  const n = perClass * classes;
  const x = new Tensor('float32', [n, features], new Float32Array(n * features));
  const y = new Tensor('float32', [n], new Float32Array(n));
  const centres = Array.from({ length: classes }, () =>
    Array.from({ length: features }, () => rng.uniform(-2, 2)),
  );
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < perClass; i++) {
      const k = c * perClass + i;
      for (let f = 0; f < features; f++) x.data[k * features + f] = centres[c]![f]! + rng.normal(0, spread);
      y.data[k] = c;
    }
  }
  return { x, y, classes };
}

/** Rows `indices` of a tensor along axis 0, as a new tensor. */
export function takeRows(t: Tensor, indices: readonly number[]): Tensor {
  const row = t.size / (t.shape[0] ?? 1);
  const data =
    t.dtype === 'float32' ? new Float32Array(indices.length * row) : new Float64Array(indices.length * row);
  indices.forEach((r, i) => {
    data.set(t.data.subarray(r * row, (r + 1) * row), i * row);
  });
  return new Tensor(t.dtype, [indices.length, ...t.shape.slice(1)], data);
}
