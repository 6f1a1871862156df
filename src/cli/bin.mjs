#!/usr/bin/env node
// The `backflow` command: in a checkout (the TypeScript source is here), the source through tsx, so
// that a dist/ left by an earlier build never runs in its place; in the installed package, which
// ships no source, the compiled CLI.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const source = fileURLToPath(new URL('./main.ts', import.meta.url));
let main;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('./main.ts'));
} else {
  const compiled = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
  ({ main } = await import(pathToFileURL(compiled).href));
}
process.exitCode = await main(process.argv.slice(2));
