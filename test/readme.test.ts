// The README's checkable claims: the ops it lists are the registered ones, and the printGraph output
// it shows is what printGraph prints for the tour's graph. (Its code blocks are type-checked against
// the packed package by test/package/check.sh.)
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GraphBuilder, listOps, printGraph } from '../src/index.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The text of the section under `## title`, up to the next `## `. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README section '${title}'`).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

describe('README', () => {
  it("lists every registered op in 'Supported ops', and no other", () => {
    const table = section('Supported ops')
      .split('\n')
      .filter((line) => line.startsWith('| ') && !line.startsWith('| kind'));
    // The ops of each row, leaving out what parentheses say about them (attributes).
    const ops = (cell: string) => [...cell.replace(/\([^)]*\)/g, '').matchAll(/`(\w+)`/g)].map((m) => m[1]!);
    const listed = table.flatMap((line) => ops(line.split('|')[2]!));
    expect([...listed].sort()).toEqual(listOps());
  });

  it("shows printGraph's output for the tour's graph as printGraph prints it", () => {
    const tour = section('API tour');
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 4]);
    const y = b.input('y', ['B']);
    const h = b.tanh(
      b.add(b.matmul(x, b.param('w1', [4, 16])), b.param('b1', [16], { init: { kind: 'zeros' } })),
    );
    b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('w2', [16, 3])), y));
    const printed = printGraph(b.build());
    // The same graph as the tour's first code block builds.
    expect(tour).toContain("b.param('b1', [16], { init: { kind: 'zeros' } })");
    expect(tour).toContain(`\`\`\`\n${printed}\n\`\`\``);
  });

  it('names the package it installs as package.json does', () => {
    const { name } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(section('Install')).toContain(`npm install ${name}\n`);
  });
});
