import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { InputError } from '../../src/errors.ts';
import {
  KERNELS,
  KERNELS_OFFERED,
  KERNELS_VARIANT,
  kernelsInUse,
  selectKernels,
} from '../../src/tensor/default-kernels.ts';
import { bitwiseEqual } from '../../src/tensor/tensor.ts';
import { bestWasmVariant, wasmVariants } from '../../src/tensor/wasm/index.ts';
import { relaxedAllowed } from '../../src/tensor/wasm/instance.ts';
import { wideMlp } from '../support/models.ts';
import { expectMatchesReference } from '../support/reference.ts';

const exec = promisify(execFile);
const tsx = join(import.meta.dirname, '../../node_modules/.bin/tsx');
const fixture = join(import.meta.dirname, '../fixtures/kernels-choice.ts');

/** The fixture's report in a fresh process (started without V8 flags) with this environment. */
async function choice(env: Record<string, string>) {
  const { stdout } = await exec(tsx, [fixture], { env: { ...process.env, ...env }, timeout: 60_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

// Children inherit this process's environment: the two variables are set explicitly in each.
const DEFAULTS = { BACKFLOW_KERNELS: '', BACKFLOW_WASM_RELAXED: '' };

describe('kernel choice', () => {
  it('uses the WebAssembly kernels by default where supported, the best offered', () => {
    expect(KERNELS).toBe(bestWasmVariant() === null ? 'ts' : 'wasm');
    expect(KERNELS_VARIANT).toBe(KERNELS_OFFERED[0]);
    expect(KERNELS_OFFERED).toEqual([...wasmVariants().map((v) => `wasm ${v}`), 'ts']);
  });

  it('a process started without flags turns relaxed SIMD on itself, workers included, still bitwise equal to the reference', async () => {
    const relaxed = wasmVariants().includes('relaxed-simd');
    const got = await choice(DEFAULTS);
    expect(got).toMatchObject({ kernels: KERNELS_VARIANT, workerKernels: KERNELS_VARIANT, equal: true });
    // The FMA kernels round differently from simd128: the equality above is not a coincidence.
    if (relaxed)
      expect(got).toMatchObject({ kernels: 'wasm relaxed-simd', relaxedValidates: true, differs: true });
  });

  it('BACKFLOW_WASM_RELAXED=0 keeps the simd128 kernels and the V8 flags as they were', async () => {
    if (!wasmVariants().includes('simd128')) return;
    const got = await choice({ ...DEFAULTS, BACKFLOW_WASM_RELAXED: '0' });
    expect(got).toEqual({
      kernels: 'wasm simd128',
      offered: ['wasm simd128', 'ts'],
      workerKernels: 'wasm simd128',
      relaxedValidates: false,
      equal: true,
      differs: false,
    });
  });

  it('falls back to the TypeScript kernels (BACKFLOW_KERNELS=ts), workers included, still bitwise equal to the reference', async () => {
    const got = await choice({ ...DEFAULTS, BACKFLOW_KERNELS: 'ts' });
    expect(got).toMatchObject({ kernels: 'ts', offered: ['ts'], workerKernels: 'ts', equal: true });
  });

  it("hosts run the coordinator's kernels from their HostInit: workers switch, bitwise equal to its reference", async () => {
    if (!KERNELS_OFFERED.includes('wasm simd128') || KERNELS_VARIANT === 'wasm simd128') return;
    const model = wideMlp();
    const feeds = model.feeds(64);
    const options = { workers: 2, replicas: 2 };
    const ours = referenceStep(model.graph, feeds, model.params, options);
    // The workers' own choice is KERNELS_VARIANT; this thread, the coordinator, switches away from it.
    selectKernels('wasm simd128', 0);
    try {
      expect(kernelsInUse()).toBe('wasm simd128');
      const theirs = referenceStep(model.graph, feeds, model.params, options);
      expect(bitwiseEqual(theirs.grads['mlp.0.w']!, ours.grads['mlp.0.w']!)).toBe(false);
      await expectMatchesReference(model.graph, model.params, feeds, options);
    } finally {
      selectKernels(KERNELS_VARIANT, 0);
    }
    expect(kernelsInUse()).toBe(KERNELS_VARIANT);
    expect(() => selectKernels('wasm none', 3)).toThrow(
      /worker 3: the coordinator runs the kernels 'wasm none', this process offers/,
    );
  });

  it('refuses a BACKFLOW_WASM_RELAXED it does not know, saying what it expected', () => {
    const before = process.env['BACKFLOW_WASM_RELAXED'];
    try {
      process.env['BACKFLOW_WASM_RELAXED'] = 'yes';
      expect(() => relaxedAllowed()).toThrow(InputError);
      expect(() => relaxedAllowed()).toThrow(/BACKFLOW_WASM_RELAXED: expected '0' or '1', found 'yes'/);
      for (const [v, allowed] of [
        ['0', false],
        ['1', true],
        ['', true],
      ] as const) {
        process.env['BACKFLOW_WASM_RELAXED'] = v;
        expect(relaxedAllowed()).toBe(allowed);
      }
    } finally {
      if (before === undefined) delete process.env['BACKFLOW_WASM_RELAXED'];
      else process.env['BACKFLOW_WASM_RELAXED'] = before;
    }
  });
});
