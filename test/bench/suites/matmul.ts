/**
 * Float32 GFLOP/s of the tiled `matmul` for each transpose combination, a batched case, and the naive
 * triple loop at 512 as a baseline (`ratio_vs_naive` on the 512 cases). Inputs are seeded.
 */
import { matmul } from '../../../src/tensor/matmul.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import type { Tensor } from '../../../src/tensor/tensor.ts';
import type { Stats, Suite } from '../harness.ts';

const TRANSPOSES = [
  ['NN', false, false],
  ['NT', false, true],
  ['TN', true, false],
  ['TT', true, true],
] as const;

/** Timed runs per size: about a second per case on this machine. */
const RUNS: Record<number, number> = { 128: 40, 256: 20, 512: 10, 1024: 4 };

/** GFLOP/s from the median, with the range the fastest and slowest runs give. */
function gflops(flops: number, s: Stats): { gflops: number; gflops_min: number; gflops_max: number } {
  const rate = (ms: number) => Math.round(flops / ms / 1e4) / 100;
  return { gflops: rate(s.median), gflops_min: rate(s.max), gflops_max: rate(s.min) };
}

/** The baseline: the simple triple loop (float64 accumulator, row-major, no packing). */
function naiveMatmul(a: Float32Array, b: Float32Array, c: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < n; p++) sum += a[i * n + p]! * b[p * n + j]!;
      c[i * n + j] = sum;
    }
  }
}

export const matmulSuite: Suite = {
  name: 'matmul',
  description: 'float32 GFLOP/s of matmul at 128-512 (NN, NT, TN, TT), batched, vs the naive loop',
  flags: { large: 'also measure 1024x1024x1024' },
  async run(ctx) {
    const rng = new Rng(42);
    const square = (n: number): Tensor => rng.uniformTensor([n, n], -1, 1, 'float32');
    const sizes = ctx.flags.has('large') ? [128, 256, 512, 1024] : [128, 256, 512];
    let naiveGflops: number | undefined;
    for (const size of sizes) {
      const [a, b] = [square(size), square(size)];
      const flops = 2 * size ** 3;
      if (size === 512) {
        const c = new Float32Array(size * size);
        const naive = await ctx.measure(
          `naive ${size}`,
          () => naiveMatmul(a.data as Float32Array, b.data as Float32Array, c, size),
          { runs: 3, warmup: 1, extra: (s) => ({ size, trans: 'NN', ...gflops(flops, s) }) },
        );
        naiveGflops = naive['gflops'] as number;
      }
      for (const [trans, transA, transB] of TRANSPOSES) {
        await ctx.measure(`${size} ${trans}`, () => matmul(a, b, transA, transB), {
          runs: RUNS[size],
          extra: (s) => {
            const figures = { size, trans, ...gflops(flops, s) };
            if (size !== 512 || naiveGflops === undefined) return figures;
            return { ...figures, ratio_vs_naive: Math.round((figures.gflops / naiveGflops) * 100) / 100 };
          },
        });
      }
    }
    // A linear layer over a batch of sequences: [16,128,128] x [128,128], the weight broadcast.
    const [batch, size] = [16, 128];
    const x = rng.uniformTensor([batch, size, size], -1, 1, 'float32');
    const w = square(size);
    await ctx.measure(`batched ${batch}x${size}`, () => matmul(x, w, false, true), {
      runs: 20,
      extra: (s) => ({ size, trans: 'NT', batch, ...gflops(batch * 2 * size ** 3, s) }),
    });
  },
};
