import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { KERNELS } from '../../src/tensor/default-kernels.ts';
import { bestWasmVariant } from '../../src/tensor/wasm/index.ts';

const exec = promisify(execFile);
const tsx = join(import.meta.dirname, '../../node_modules/.bin/tsx');
const fixture = join(import.meta.dirname, '../fixtures/kernels-choice.ts');

describe('kernel choice', () => {
  it('uses the WebAssembly kernels by default where supported', () => {
    expect(KERNELS).toBe(bestWasmVariant() === null ? 'ts' : 'wasm');
  });

  it('falls back to the TypeScript kernels (BACKFLOW_KERNELS=ts), workers included, still bitwise equal to the reference', async () => {
    const { stdout } = await exec(tsx, [fixture], {
      env: { ...process.env, BACKFLOW_KERNELS: 'ts' },
      timeout: 60_000,
    });
    expect(JSON.parse(stdout)).toEqual({ kernels: 'ts', equal: true });
  });
});
