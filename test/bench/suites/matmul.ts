/**
 * Float32 GFLOP/s of matmul for each transpose combination, one thread:
 * - the tiled TypeScript `matmul` (cases `<size> <trans>`), with the naive triple loop at 512 as a
 *   baseline (`ratio_vs_naive` on the 512 cases) and a batched case;
 * - the WebAssembly SIMD kernels (`wasm <size> <trans>`, and `wasm-relaxed ...` where the relaxed-SIMD
 *   FMA variant runs: by default on Node 20, Note [relaxed SIMD for every process]), each next to
 *   `@tensorflow/tfjs-backend-wasm` measured just before it on the same inputs
 *   (`tfjs-wasm <size> <trans>`, single-threaded SIMD build): `ratio_vs_tfjs_wasm`, and
 *   `ratio_vs_nn`, a transposed case against the plain one of the same kernel.
 * - conv2d on LeNet-5's two convolutions (batch 64), forward and both halves of the backward
 *   (`lenet conv1`, `lenet conv2`, then `wasm ...`): im2col or col2im around one matmul each, so the
 *   figure is how much of the matmul kernel's speed survives the data movement.
 * Inputs are seeded. Sizes 128, 256, 512; 1024 with --large.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { eager } from '../../../src/ops/eager.ts';
import { fallbackKernels, type Kernels, useKernels } from '../../../src/tensor/kernels.ts';
import { matmul } from '../../../src/tensor/matmul.ts';
import { Rng } from '../../../src/tensor/rng.ts';
import type { Tensor } from '../../../src/tensor/tensor.ts';
import { createWasmKernels, type WasmKernels, wasmVariants } from '../../../src/tensor/wasm/index.ts';
import type { BenchContext, Stats, Suite } from '../harness.ts';

const TRANSPOSES = [
  ['NN', false, false],
  ['NT', false, true],
  ['TN', true, false],
  ['TT', true, true],
] as const;

/** Timed runs per size: about a second per case on this machine. */
const RUNS: Record<number, number> = { 128: 40, 256: 20, 512: 10, 1024: 4 };

type Gflops = { gflops: number; gflops_min: number; gflops_max: number };

/** GFLOP/s from the median, with the range the fastest and slowest runs give. */
function gflops(flops: number, s: Stats): Gflops {
  const rate = (ms: number) => Math.round(flops / ms / 1e4) / 100;
  return { gflops: rate(s.median), gflops_min: rate(s.max), gflops_max: rate(s.min) };
}

const ratio = (x: number, y: number) => Math.round((x / y) * 100) / 100;

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

/** A square matmul as tfjs-wasm runs it, result read back (as ours is copied out of wasm memory). */
type TfjsMatmul = (a: Tensor, b: Tensor, transA: boolean, transB: boolean) => () => void;

/**
 * tfjs-core with the wasm backend, single-threaded SIMD, its .wasm files loaded from node_modules (no
 * network). Null, with the reason reported, when it cannot start.
 */
async function loadTfjsWasm(ctx: BenchContext): Promise<TfjsMatmul | null> {
  try {
    const tf = await import('@tensorflow/tfjs-core');
    const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
    const wasmFile = createRequire(import.meta.url).resolve(
      '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm',
    );
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    setWasmPaths(`${dirname(wasmFile)}/`);
    if (!(await tf.setBackend('wasm'))) throw new Error('setBackend("wasm") returned false');
    await tf.ready();
    return (a, b, transA, transB) => {
      const [x, y] = [tf.tensor(a.data, [...a.shape]), tf.tensor(b.data, [...b.shape])];
      return () => {
        const c = tf.matMul(x, y, transA, transB);
        c.dataSync();
        c.dispose();
      };
    };
  } catch (error) {
    ctx.report({
      suite: ctx.suite,
      case: 'tfjs-wasm unavailable',
      median_ms: 0,
      min_ms: 0,
      max_ms: 0,
      runs: 0,
      error: String(error),
    });
    return null;
  }
}

export const matmulSuite: Suite = {
  takesRuns: true,
  name: 'matmul',
  description:
    'float32 GFLOP/s of matmul (NN, NT, TN, TT): TypeScript, wasm SIMD, tfjs-wasm; naive loop, batched; LeNet conv2d forward and backward',
  flags: { large: 'also measure 1024x1024x1024' },
  async run(ctx) {
    const rng = new Rng(42);
    const square = (n: number): Tensor => rng.uniformTensor([n, n], -1, 1, 'float32');
    const sizes = ctx.flags.has('large') ? [128, 256, 512, 1024] : [128, 256, 512];
    const wasm = wasmVariants().map(
      (v) => [v === 'simd128' ? 'wasm' : 'wasm-relaxed', createWasmKernels(v, { small: false })] as const,
    );
    const tfjs = await loadTfjsWasm(ctx);
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
            return { ...figures, ratio_vs_naive: ratio(figures.gflops, naiveGflops) };
          },
        });
      }
      // Each wasm case right after tfjs-wasm on the same inputs, so their ratio shares the noise.
      const plain = new Map<string, number>();
      for (const [trans, transA, transB] of TRANSPOSES) {
        let tfjsGflops: number | undefined;
        if (tfjs !== null) {
          const result = await ctx.measure(`tfjs-wasm ${size} ${trans}`, tfjs(a, b, transA, transB), {
            runs: RUNS[size],
            extra: (s) => ({ size, trans, impl: 'tfjs-wasm', ...gflops(flops, s) }),
          });
          tfjsGflops = result['gflops'] as number;
        }
        for (const [name, kernels] of wasm) {
          await measureWasm(ctx, `${name} ${size} ${trans}`, kernels, a, b, transA, transB, (s) => {
            const figures = { size, trans, impl: name, ...gflops(flops, s) };
            if (trans === 'NN') plain.set(name, figures.gflops);
            return {
              ...figures,
              ...(tfjsGflops === undefined ? {} : { ratio_vs_tfjs_wasm: ratio(figures.gflops, tfjsGflops) }),
              ratio_vs_nn: ratio(figures.gflops, plain.get(name)!),
            };
          });
        }
      }
    }
    // A linear layer over a batch of sequences: [16,128,128] x [128,128], the weight broadcast.
    const [batch, size] = [16, 128];
    const x = rng.uniformTensor([batch, size, size], -1, 1, 'float32');
    const w = square(size);
    const batchedFlops = batch * 2 * size ** 3;
    const ts = await ctx.measure(`batched ${batch}x${size}`, () => matmul(x, w, false, true), {
      runs: 20,
      extra: (s) => ({ size, trans: 'NT', batch, ...gflops(batchedFlops, s) }),
    });
    for (const [name, kernels] of wasm) {
      await measureWasm(ctx, `${name} batched ${batch}x${size}`, kernels, x, w, false, true, (s) => {
        const figures = gflops(batchedFlops, s);
        return {
          size,
          trans: 'NT',
          batch,
          impl: name,
          ...figures,
          ratio_vs_ts: ratio(figures.gflops, ts['gflops'] as number),
        };
      });
    }
    await measureConv(ctx, rng, 'ts', fallbackKernels());
    for (const [name, kernels] of wasm) await measureConv(ctx, rng, name, kernels);
  },
};

/** LeNet-5's convolutions on a batch of 64: 28x28x1 images through 6 5x5 filters, 12x12x6 through 16. */
const LENET = [
  { name: 'conv1', image: [64, 28, 28, 1], filter: [5, 5, 1, 6] },
  { name: 'conv2', image: [64, 12, 12, 6], filter: [5, 5, 6, 16] },
] as const;

/**
 * conv2d forward, its input gradient and its filter gradient (a training step's three convolutions)
 * with `kernels` active: three matmuls of 2 M K F FLOPs each, M = N*OH*OW, K = KH*KW*C.
 */
async function measureConv(ctx: BenchContext, rng: Rng, impl: string, kernels: Partial<Kernels>) {
  for (const { name, image, filter } of LENET) {
    const x = rng.uniformTensor([...image], -1, 1, 'float32');
    const w = rng.uniformTensor([...filter], -1, 1, 'float32');
    const size = [image[1], image[2]];
    const kernel = [filter[0], filter[1]];
    const [oh, ow] = [image[1] - filter[0] + 1, image[2] - filter[1] + 1];
    const g = rng.uniformTensor([image[0], oh, ow, filter[3]], -1, 1, 'float32');
    const flops = 3 * 2 * (image[0] * oh * ow) * (filter[0] * filter[1] * filter[2]) * filter[3];
    const restore = useKernels(kernels);
    try {
      await ctx.measure(
        `${impl === 'ts' ? '' : `${impl} `}lenet ${name}`,
        () => {
          eager.conv2d(x, w);
          eager.conv2dInputGrad(g, w, size);
          eager.conv2dWeightGrad(x, g, kernel);
        },
        {
          runs: 20,
          extra: (s) => ({ impl, shape: `${image.join('x')} * ${filter.join('x')}`, ...gflops(flops, s) }),
        },
      );
    } finally {
      restore();
    }
  }
}

function measureWasm(
  ctx: BenchContext,
  name: string,
  kernels: WasmKernels,
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  extra: (s: Stats) => Record<string, number | string>,
) {
  // Three times the runs of the slower cases (a wasm run is short): a steadier median on a shared machine.
  const size = a.shape[a.rank - 1]!;
  return ctx.measure(name, () => kernels.matmul(a, b, transA, transB), { runs: 3 * RUNS[size]!, extra });
}
