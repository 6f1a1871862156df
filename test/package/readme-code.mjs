// Prints the README's TypeScript blocks as one module, in order, so that they can be type-checked
// against the installed package (test/package/check.sh). The blocks read as one program: a later
// block may use what an earlier one defined, and no name is imported twice.
import { readFileSync } from 'node:fs';

const readme = readFileSync(process.argv[2] ?? new URL('../../README.md', import.meta.url), 'utf8');
const lines = readme.split('\n');
const out = [];
for (let i = 0; i < lines.length; i++) {
  if (lines[i] !== '```ts') continue;
  out.push(`// README.md line ${i + 2}`);
  for (i++; i < lines.length && lines[i] !== '```'; i++) out.push(lines[i]);
}
if (out.length === 0) throw new Error('readme-code: no ```ts block in the README');
console.log(`${out.join('\n')}\nexport {};`);
