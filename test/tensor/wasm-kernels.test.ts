/**
 * The WebAssembly kernels against the TypeScript kernels (the oracle). Stated tolerances:
 * - matmul: |wasm - ts| <= 1e-5 * sqrt(k) * sum_p |a_ip * b_pj| per element (ts sums in float64,
 *   wasm in float32); the simd128 variant is moreover bitwise equal to the naive float32 loop
 *   `s = fround(s + fround(a * b))` (Note [wasm matmul summation order]), the relaxed-simd one to
 *   the naive float32 FMA loop `s = fma(a, b, s)` rounded once (Note [relaxed SIMD for every process]);
 * - unary, binary (every broadcast of Note [row layouts]), sum over leading axes, max: bitwise equal (NaN payloads aside; max may differ in the
 *   sign of a zero);
 * - sum over trailing axes: |wasm - ts| <= 1e-6 * sum |x| (float64 lanes in another order, rounded once);
 * - softmax: |wasm - ts| <= 1e-5 * |ts| + 1e-37 (float32 exp, about 1 ulp; 0 below exp(-87.3));
 * - logSoftmax: |wasm - ts| <= 2e-6 * (1 + |ts|).
 * NaN and infinities land where the TypeScript kernels put them.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BinaryKind,
  fallbackKernels,
  kernels,
  type UnaryKind,
  useKernels,
} from '../../src/tensor/kernels.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { bitwiseEqual, cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { assemble, GENERATED_URL, generatedModule } from '../../src/tensor/wasm/build.ts';
import {
  createWasmKernels,
  installWasmKernels,
  wasmKernels,
  wasmVariants,
} from '../../src/tensor/wasm/index.ts';
import { expectBitwise, expectSameValues, expectWithin } from '../support/expect.ts';

const ts = fallbackKernels();
const SIZES = [1, 3, 5, 17, 33, 65, 127];
const TRANSPOSES = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;

/** sum_p |a_ip b_pj| in float64 for each output element: the scale the float32 sum works at. */
function absProducts(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const abs = (t: Tensor) => ts.unary('abs', cast(t, 'float64'));
  return ts.matmul(abs(a), abs(b), transA, transB);
}

/**
 * The float32 fused multiply-add of float32 values: a * b + c rounded once. The product is exact in
 * float64; the float64 sum t is off the exact sum by e (TwoSum), which only matters when t is a
 * float32 halfway point: there fround would round a tie the exact sum does not have.
 */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const t = p + c;
  const v = t - p;
  const e = p - (t - v) + (c - v);
  const r = Math.fround(t);
  if (e === 0 || r === t || !Number.isFinite(t)) return r;
  const other = t + (t - r);
  if (Math.fround(other) !== other) return r; // t is not halfway between r and a neighbour
  return e > 0 ? Math.max(r, other) : Math.min(r, other);
}

/** The naive loop over one output element, each step rounded as `step` says. */
function naiveMatmul(
  a: Tensor,
  b: Tensor,
  [m, k, n]: readonly [number, number, number],
  [transA, transB]: readonly [boolean, boolean],
  step: (s: number, x: number, y: number) => number,
): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++)
        sum = step(sum, a.data[transA ? p * m + i : i * k + p]!, b.data[transB ? j * k + p : p * n + j]!);
      out[i * n + j] = sum;
    }
  }
  return out;
}

/** Uniform values with NaN, infinities and signed zeros sprinkled in. */
function withSpecials(rng: Rng, shape: number[], low = -3, high = 3): Tensor {
  const t = rng.uniformTensor(shape, low, high);
  const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0];
  for (let i = 0; i < t.size; i++) if (rng.next() < 0.1) t.data[i] = specials[rng.int(specials.length)]!;
  return t;
}

describe('wasm module', () => {
  it('the committed module.generated.ts is a fresh assembly of kernels.wat', async () => {
    const fresh = generatedModule(await assemble());
    expect(readFileSync(GENERATED_URL, 'utf8')).toBe(fresh);
  });

  it('runs with SIMD128 on this engine', () => {
    expect(wasmVariants()).toContain('simd128');
  });
});

describe.each(wasmVariants())('wasm kernels (%s)', (variant) => {
  const wasm = createWasmKernels(variant, { small: false });

  describe.each(TRANSPOSES)('matmul transA=%s transB=%s', (transA, transB) => {
    const operand = (batch: number[], rows: number, cols: number, trans: boolean) =>
      trans ? [...batch, cols, rows] : [...batch, rows, cols];
    const check = (a: Tensor, b: Tensor, k: number) => {
      const c = wasm.matmul(a, b, transA, transB);
      const scale = absProducts(a, b, transA, transB);
      expectWithin(c, ts.matmul(a, b, transA, transB), (i) => 1e-5 * Math.sqrt(k) * scale.data[i]!);
      return c;
    };

    it('agrees with the TypeScript kernel on random odd shapes', () => {
      const rng = new Rng(1234);
      for (let trial = 0; trial < 30; trial++) {
        const [m, k, n] = [0, 0, 0].map(() => SIZES[rng.int(SIZES.length)]!) as [number, number, number];
        check(
          rng.uniformTensor(operand([], m, k, transA), -1, 1),
          rng.uniformTensor(operand([], k, n, transB), -1, 1),
          k,
        );
      }
    });

    it(`is the naive float32 ${variant === 'simd128' ? '' : 'FMA '}loop, bitwise, across cache blocks`, () => {
      const step =
        variant === 'simd128'
          ? (s: number, x: number, y: number) => Math.fround(s + Math.fround(x * y))
          : (s: number, x: number, y: number) => fmaF32(x, y, s);
      const rng = new Rng(99);
      // m > MC = 120, k > KC = 256; and n > NC = 1024 with a thin m.
      for (const [m, k, n] of [
        [131, 261, 19],
        [3, 5, 1037],
      ] as const) {
        const a = rng.normalTensor(operand([], m, k, transA));
        const b = rng.normalTensor(operand([], k, n, transB));
        const c = wasm.matmul(a, b, transA, transB).data;
        const naive = naiveMatmul(a, b, [m, k, n], [transA, transB], step);
        for (let i = 0; i < m * n; i++)
          if (!Object.is(c[i], naive[i])) expect.fail(`element ${i}: ${c[i]} vs ${naive[i]}`);
      }
    });

    it('broadcasts batch dimensions', () => {
      const rng = new Rng(7);
      const [m, k, n] = [5, 17, 3];
      const cases: [number[], number[]][] = [
        [[2, 1], [3]],
        [[], [4]],
        [[3], []],
        [
          [2, 3],
          [2, 3],
        ],
      ];
      for (const [batchA, batchB] of cases) {
        const a = rng.uniformTensor(operand(batchA, m, k, transA), -1, 1);
        const b = rng.uniformTensor(operand(batchB, k, n, transB), -1, 1);
        check(a, b, k);
      }
    });

    // n = 16 and m = 6: C is accumulated in place (whole columns of tiles); the padded rows of a tall
    // product land past it, those of a batch loop (m a multiple of 6) nowhere.
    it.each([
      [5, 9, 7],
      [5, 9, 16],
      [6, 9, 16],
    ])(
      'a batch of A against one B (one tall product) is bitwise each matrix on its own: m k n = %i %i %i',
      (m, k, n) => {
        const rng = new Rng(11);
        const a = rng.normalTensor(operand([3, 2], m, k, transA));
        const b = rng.normalTensor(operand([], k, n, transB));
        const c = wasm.matmul(a, b, transA, transB);
        for (let t = 0; t < 6; t++) {
          const at = tensor(a.data.slice(t * m * k, (t + 1) * m * k), { shape: operand([], m, k, transA) });
          const ct = tensor(c.data.slice(t * m * n, (t + 1) * m * n), { shape: [m, n] });
          expectBitwise(ct, wasm.matmul(at, b, transA, transB));
        }
      },
    );

    it('propagates NaN and infinities like the TypeScript kernel', () => {
      const rng = new Rng(3);
      const [m, k, n] = [6, 9, 10];
      const a = withSpecials(rng, operand([], m, k, transA));
      const b = withSpecials(rng, operand([], k, n, transB));
      check(a, b, k);
    });
  });

  it('matmul is deterministic: same bits every call, after other calls grew the memory', () => {
    const rng = new Rng(21);
    const [a, b] = [rng.normalTensor([37, 300]), rng.normalTensor([300, 45])];
    const first = wasm.matmul(a, b, false, false);
    wasm.matmul(rng.uniformTensor([700, 600]), rng.uniformTensor([700, 500]), true, false);
    expectBitwise(wasm.matmul(a, b, false, false), first);
    // k = 0 gives zeros, an all -0 product row +0, as a sum started from +0 does.
    expect(
      Array.from(
        wasm.matmul(tensor([], { shape: [2, 0] }), tensor([], { shape: [0, 3] }), false, false).data,
      ),
    ).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Object.is(wasm.matmul(tensor([[-0, -0]]), tensor([[1], [1]]), false, false).data[0], 0)).toBe(
      true,
    );
  });

  it.each([
    'neg',
    'abs',
    'square',
    'relu',
    'leakyRelu',
    'pow',
    'erf',
    'exp',
    'gelu',
    'geluGrad',
  ] as UnaryKind[])('unary %s equals the TypeScript kernel', (kind) => {
    const rng = new Rng(5);
    for (const size of SIZES) {
      // The float64 kernels also past their clamps and where exp under- or overflows.
      const wide = ['erf', 'exp', 'gelu', 'geluGrad'].includes(kind);
      const x = wide ? withSpecials(rng, [size, 30], -120, 110) : withSpecials(rng, [size, 3]);
      const param = kind === 'leakyRelu' ? 0.01 : 2;
      expectSameValues(wasm.unary(kind, x, param), ts.unary(kind, x, param));
      const near = withSpecials(rng, [size, 3]);
      if (wide) expectSameValues(wasm.unary(kind, near), ts.unary(kind, near));
    }
  });

  const BINARY: BinaryKind[] = [
    'add',
    'sub',
    'mul',
    'div',
    'maximum',
    'minimum',
    'greater',
    'greaterEqual',
    'equal',
  ];
  it.each(BINARY)('binary %s equals the TypeScript kernel, with broadcasting', (kind) => {
    const rng = new Rng(8);
    for (const cols of SIZES) {
      const rows = SIZES[rng.int(SIZES.length)]!;
      const x = withSpecials(rng, [rows, cols]);
      const pairs: [number[], number[]][] = [
        [
          [rows, cols],
          [rows, cols],
        ], // same shape
        [[rows, cols], []], // scalar either side
        [[], [rows, cols]],
        [[rows, cols], [cols]], // row vector over the last axis either side
        [
          [1, cols],
          [2, rows, cols],
        ],
        [
          [rows, 1],
          [rows, cols],
        ], // a column (one value per row) either side, alone or with a row vector
        [
          [2, rows, cols],
          [rows, 1],
        ],
        [[rows, 1], [cols]],
        [
          [2, 1, cols],
          [2, rows, 1],
        ], // not a row layout: the TypeScript fallback
      ];
      for (const [sa, sb] of pairs) {
        const a = sa.length === 2 && sa[0] === rows && sa[1] === cols ? x : withSpecials(rng, sa);
        const b = withSpecials(rng, sb);
        expectSameValues(wasm.binary(kind, a, b), ts.binary(kind, a, b));
      }
    }
    // Equal values of opposite zero sign keep the TypeScript choice.
    const [pz, nz] = [tensor([0, -0]), tensor([-0, 0])];
    expectSameValues(wasm.binary(kind, pz, nz), ts.binary(kind, pz, nz));
  });

  it('sum and max over trailing, leading and all axes agree with the TypeScript kernel', () => {
    const rng = new Rng(13);
    for (let trial = 0; trial < 40; trial++) {
      const shape = [0, 0, 0].map(() => SIZES[rng.int(5)]!);
      const x = rng.uniformTensor(shape, -2, 2);
      for (const axes of [[2], [1, 2], [0, 1, 2], [0], [0, 1], [1], [0, 2]]) {
        const absSum = ts.reduce('sum', ts.unary('abs', x), axes);
        const sum = wasm.reduce('sum', x, axes);
        if (axes[0] === 0 && axes.length < 3) expectSameValues(sum, ts.reduce('sum', x, axes));
        else expectWithin(sum, ts.reduce('sum', x, axes), (i) => 1e-6 * absSum.data[i]!);
        expectSameValues(wasm.reduce('max', x, axes), ts.reduce('max', x, axes), false);
      }
    }
  });

  it('reductions propagate NaN and infinities', () => {
    const rng = new Rng(17);
    const x = withSpecials(rng, [9, 33]);
    for (const axes of [[1], [0], [0, 1]]) {
      expectWithin(wasm.reduce('sum', x, axes), ts.reduce('sum', x, axes), () => 1e-4);
      expectSameValues(wasm.reduce('max', x, axes), ts.reduce('max', x, axes), false);
    }
  });

  it('softmax and logSoftmax over the last axis agree with the TypeScript kernels', () => {
    const rng = new Rng(19);
    for (const len of SIZES) {
      for (const scale of [1, 10, 60]) {
        const x = rng.normalTensor([SIZES[rng.int(4)]!, len], 0, scale);
        const [sm, lsm] = [ts.softmax(x, 1), ts.logSoftmax(x, 1)];
        expectWithin(wasm.softmax(x, 1), sm, (i) => 1e-5 * Math.abs(sm.data[i]!) + 1e-37);
        expectWithin(wasm.logSoftmax(x, 1), lsm, (i) => 2e-6 * (1 + Math.abs(lsm.data[i]!)));
      }
    }
  });

  it('softmax rows with NaN, +inf or only -inf are NaN; -inf entries are 0 (as in TypeScript)', () => {
    const [inf, nan] = [Number.POSITIVE_INFINITY, Number.NaN];
    const x = tensor([
      [1, nan, 2, 3, 0],
      [1, inf, 2, 0, 1],
      [-inf, -inf, -inf, -inf, -inf],
      [1, -inf, 2, -inf, 0],
    ]);
    expectWithin(wasm.softmax(x, 1), ts.softmax(x, 1), (i) => 1e-6 * Math.abs(ts.softmax(x, 1).data[i]!));
    expectWithin(wasm.logSoftmax(x, 1), ts.logSoftmax(x, 1), () => 1e-6);
    expect(wasm.softmax(x, 1).data[16]).toBe(0);
  });

  it('sum of squares is bitwise the TypeScript kernel (Note [global norm order]), specials included', () => {
    const rng = new Rng(29);
    const wasmAll = wasm;
    for (const n of [1, 2, 3, 4, 5, 7, 8, 255, 256, 257, 1023, 4097, 235_146]) {
      const x = rng.normalTensor([n], 0, 3);
      expect(Object.is(wasmAll.sumSquares(x), ts.sumSquares(x)), `n = ${n}`).toBe(true);
    }
    // The oracle's order: four partial sums over i mod 4, the tail in the first.
    const x = tensor([1e8, 1, 1, 1, 1e-8, 3]);
    const d = x.data;
    const s0 = d[0]! * d[0]! + d[4]! * d[4]! + d[5]! * d[5]!;
    expect(ts.sumSquares(x)).toBe(s0 + d[1]! * d[1]! + (d[2]! * d[2]! + d[3]! * d[3]!));
    const special = withSpecials(rng, [1001]);
    expect(wasmAll.sumSquares(special)).toBeNaN();
    const inf = tensor([1, Number.NEGATIVE_INFINITY, 2, 3, 4]);
    expect(wasmAll.sumSquares(inf)).toBe(Number.POSITIVE_INFINITY);
    const x64 = rng.normalTensor([300], 0, 1, 'float64');
    expect(Object.is(wasmAll.sumSquares(x64), ts.sumSquares(x64))).toBe(true);
  });

  it('Note [small tensors stay in TypeScript]: below 256 elements the TypeScript result, from 256 the wasm one', () => {
    const chosen = createWasmKernels(variant); // the threshold on, as installed
    const rng = new Rng(31);
    // Trailing-axis sums and softmax differ between the two in the last bits, so which one ran shows.
    const below = rng.normalTensor([5, 51], 0, 3);
    const at = rng.normalTensor([4, 64], 0, 3);
    expectBitwise(chosen.softmax(below, 1), ts.softmax(below, 1));
    expectBitwise(chosen.reduce('sum', below, [1]), ts.reduce('sum', below, [1]));
    expectBitwise(chosen.softmax(at, 1), wasm.softmax(at, 1));
    expectBitwise(chosen.reduce('sum', at, [1]), wasm.reduce('sum', at, [1]));
    // matmul by multiply-adds: 8x8x8 = 512 below 4096, 16x16x16 = 4096 at it.
    const [a8, a16] = [rng.normalTensor([8, 8], 0, 1), rng.normalTensor([16, 16], 0, 1)];
    expectBitwise(chosen.matmul(a8, a8, false, false), ts.matmul(a8, a8, false, false));
    expectBitwise(chosen.matmul(a16, a16, false, false), wasm.matmul(a16, a16, false, false));
    // And the two do differ on these inputs, else the checks above would not tell them apart.
    expect(bitwiseEqual(wasm.softmax(at, 1), ts.softmax(at, 1))).toBe(false);
  });

  it('float64 and unusual layouts fall back to exactly the TypeScript result', () => {
    const rng = new Rng(23);
    const x = rng.normalTensor([3, 4, 5], 0, 1, 'float64');
    const y = rng.normalTensor([3, 5, 4], 0, 1, 'float64');
    const x32 = cast(x, 'float32');
    expectBitwise(wasm.matmul(x, y, false, false), ts.matmul(x, y, false, false));
    expectBitwise(wasm.unary('relu', x), ts.unary('relu', x));
    expectBitwise(wasm.unary('tanh', x32), ts.unary('tanh', x32)); // kinds without a wasm kernel
    expectBitwise(wasm.binary('add', x, x), ts.binary('add', x, x));
    expectBitwise(wasm.reduce('sum', x, [2]), ts.reduce('sum', x, [2]));
    expectBitwise(wasm.reduce('sum', x32, [1]), ts.reduce('sum', x32, [1])); // a middle axis
    expectBitwise(wasm.softmax(x, 2), ts.softmax(x, 2));
    expectBitwise(wasm.logSoftmax(x32, 1), ts.logSoftmax(x32, 1)); // not the last axis
    // Errors come from the TypeScript kernels, unchanged.
    expect(() => wasm.matmul(x32, x32, false, false)).toThrow(/inner dimensions/);
    expect(() => wasm.binary('add', x32, tensor([1, 2]))).toThrow(/do not broadcast/);
  });
});

describe('installation', () => {
  let undo: (() => void) | null = null;
  afterEach(() => undo?.());

  it('installWasmKernels makes the wasm kernels active for every op, the rest unchanged', () => {
    const before = kernels();
    undo = () => useKernels(before);
    expect(installWasmKernels()).toBe(true);
    const active = kernels();
    expect(active.matmul).not.toBe(before.matmul);
    expect(active.transpose).toBe(before.transpose);
    const rng = new Rng(29);
    const [a, b] = [rng.uniformTensor([4, 6]), rng.uniformTensor([6, 3])];
    expectBitwise(active.matmul(a, b, false, false), wasmKernels.matmul(a, b, false, false));
  });

  it('the FMA oracle rounds once: exact ties, halfway cases off a tie, and what two roundings give', () => {
    const a = 1 + 2 ** -12;
    expect(fmaF32(a, a, -(1 + 2 ** -11))).toBe(2 ** -24);
    expect(Math.fround(Math.fround(a * a) - (1 + 2 ** -11))).toBe(0);
    // 1 + 2^-23 + 2^-24 is halfway between 1 + 2^-23 and 1 + 2^-22: a tie goes to the even one ...
    const odd = 1 + 2 ** -23;
    expect(fmaF32(1, 2 ** -24, odd)).toBe(1 + 2 ** -22);
    // ... but 2^-60 below it (the float64 sum is the tie itself) goes down.
    const [x, y] = [1 + 2 ** -18, 2 ** -24 * (1 - 2 ** -18)];
    expect(Math.fround(x * y + odd)).toBe(1 + 2 ** -22);
    expect(fmaF32(x, y, odd)).toBe(odd);
  });

  it('installWasmKernels returns false and changes nothing for a variant the engine lacks', () => {
    if (wasmVariants().includes('relaxed-simd')) return; // run without --experimental-wasm-relaxed-simd
    const before = kernels();
    expect(installWasmKernels({ variant: 'relaxed-simd' })).toBe(false);
    expect(kernels()).toBe(before);
  });

  it('gives the same bits in a worker thread', async () => {
    const rng = new Rng(31);
    const [a, b] = [rng.normalTensor([70, 300]), rng.normalTensor([300, 50])];
    const here = wasmKernels.matmul(a, b, false, false);
    // An eval worker (no fixture file) that loads tsx itself to import the TypeScript sources.
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        await import(workerData.tsxRegister);
        const { wasmKernels } = await import(workerData.wasm);
        const { Tensor } = await import(workerData.tensor);
        const [a, b] = workerData.operands.map(([shape, data]) => new Tensor('float32', shape, data));
        parentPort.postMessage(wasmKernels.matmul(a, b, false, false).data);
      })();`;
    const url = (path: string) => new URL(path, import.meta.url).href;
    const worker = new Worker(source, {
      eval: true,
      execArgv: [],
      workerData: {
        tsxRegister: url('../../workers/tsx-register.mjs'),
        wasm: url('../../src/tensor/wasm/index.ts'),
        tensor: url('../../src/tensor/tensor.ts'),
        operands: [a, b].map((t) => [t.shape, t.data]),
      },
    });
    try {
      const there = await new Promise<Float32Array>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`worker exited with code ${code}`)));
      });
      expectBitwise(tensor(there, { shape: here.shape }), here);
    } finally {
      await worker.terminate();
    }
  });
});
