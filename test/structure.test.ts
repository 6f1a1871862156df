// The shape of the code, checked: file sizes, the layer order of imports (read from
// docs/architecture.md, where it is written once), and the public API (a snapshot, so that changing
// it is deliberate).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|mjs)$/.test(e.name))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

/** Files allowed past the budget, and why. */
const LONG_FILES: Record<string, string> = {
  'src/tensor/wasm/module.generated.ts': 'generated from kernels.wat',
  'src/tensor/kernels-ts.ts': 'the kernel source: every kernel in TypeScript, the fallback and the oracle',
};

/**
 * The lines the size budget counts: all but whole-line TSDoc blocks. API documentation (every export
 * has some: `npm run docs` fails otherwise) is not the code the budget is for.
 */
function budgetLines(text: string): number {
  return text.replace(/^[ \t]*\/\*\*[\s\S]*?\*\/[ \t]*\n/gm, '').split('\n').length;
}

/** The layers of src in order, from the numbered list under "## Layers" in docs/architecture.md. */
function layers(): string[] {
  const doc = read('docs/architecture.md');
  const section = doc.slice(doc.indexOf('## Layers'), doc.indexOf('\n## ', doc.indexOf('## Layers') + 1));
  return [...section.matchAll(/^\d+\. `src\/(\w+)`/gm)].map((m) => m[1]!);
}

/** The modules a file imports (static, re-exports and dynamic imports), as paths from the root. */
function imports(file: string): string[] {
  const text = read(file);
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\b[^'";]*?from\s+'([^']+)'/gm),
    ...text.matchAll(/^\s*import\s+'([^']+)'/gm),
    ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ].map((m) => m[1]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => relative(root, join(root, file, '..', s)));
}

describe('structure', () => {
  it('no source file is longer than 400 lines, TSDoc aside (but generated code and the kernel source), the worker file under 100', () => {
    const long = [...sources('src'), ...sources('workers')]
      .map((f) => [f, budgetLines(read(f))] as const)
      .filter(([f, n]) => n > 400 && !(f in LONG_FILES));
    expect(long).toEqual([]);
    expect(read('workers/host.worker.ts').split('\n').length).toBeLessThan(100);
  });

  it('imports follow the layer order of docs/architecture.md', () => {
    const order = layers();
    expect(order.length).toBeGreaterThan(10);
    // Every folder of src is a layer, or outside the order (util), and no layer is listed twice.
    const folders = readdirSync(join(root, 'src'), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(new Set(order).size).toBe(order.length);
    expect([...folders].sort()).toEqual([...order, 'util'].sort());
    const rank = (path: string) => {
      const m = /^src\/(\w+)\//.exec(path);
      return m === null ? -1 : order.indexOf(m[1]!);
    };
    const upward: string[] = [];
    for (const file of sources('src')) {
      const from = rank(file);
      if (from === -1) continue; // src/index.ts, src/errors.ts, src/util
      for (const target of imports(file)) {
        const to = rank(target);
        if (to > from) upward.push(`${file} imports ${target}`);
      }
    }
    expect(upward).toEqual([]);
    // src/errors.ts and src/util import no layer.
    const base = ['src/errors.ts', ...sources('src/util')].flatMap((f) =>
      imports(f)
        .filter((t) => rank(t) !== -1)
        .map((t) => `${f} imports ${t}`),
    );
    expect(base).toEqual([]);
  });

  it('examples use only the public API: they import the package by its name, and node: builtins', () => {
    const name = JSON.parse(read('package.json')).name as string;
    const stray = sources('examples').flatMap((file) =>
      [
        ...read(file).matchAll(
          /^\s*(?:import|export)\b[^'";]*?from\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/gm,
        ),
      ]
        .map((m) => (m[1] ?? m[2])!)
        .filter((spec) => spec !== name && !spec.startsWith('node:'))
        .map((spec) => `${file} imports ${spec}`),
    );
    expect(stray).toEqual([]);
  });

  it('the public API is the snapshot (src/index.ts)', async () => {
    const values = Object.keys(await import('../src/index.ts')).sort();
    const text = read('src/index.ts');
    const types = [
      ...[...text.matchAll(/export type \{([^}]*)\}/g)].flatMap((m) => m[1]!.split(',')),
      ...[...text.matchAll(/export \{([^}]*)\}/g)].flatMap((m) =>
        m[1]!.split(',').filter((s) => s.trim().startsWith('type ')),
      ),
    ]
      .map((s) => s.replace(/^\s*type\s+/, '').trim())
      .filter((s) => s.length > 0)
      .sort();
    const surface = ['values:', ...values.map((v) => `  ${v}`), 'types:', ...types.map((t) => `  ${t}`), ''];
    await expect(surface.join('\n')).toMatchFileSnapshot('./__snapshots__/public-api.txt');
  });
});
