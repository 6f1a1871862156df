// The package as its users run it: sources compiled by tsc as `npm run build` compiles them.
import { execFile } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const execFileAsync = promisify(execFile);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Compiles `files` (paths from the checkout's root), and with them every source they import, as
 * `npm run build` compiles the package (tsconfig.build.json; no declarations, no type check) into
 * `dir`/out; returns that directory, laid out like the checkout. The output resolves its
 * dependencies through a link to this checkout's node_modules.
 */
export async function buildInto(dir: string, files: readonly string[]): Promise<string> {
  const out = join(dir, 'out');
  const tsconfig = join(dir, 'tsconfig.json');
  const compilerOptions = {
    outDir: out,
    rootDir: ROOT,
    declaration: false,
    noCheck: true,
    typeRoots: [join(ROOT, 'node_modules', '@types')],
  };
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.build.json'),
      compilerOptions,
      files: files.map((f) => join(ROOT, f)),
    }),
  );
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await execFileAsync(process.execPath, [tsc, '-p', tsconfig]);
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir');
  return out;
}
