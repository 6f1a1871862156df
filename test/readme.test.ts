// The README's checkable claims: the ops it lists are the registered ones, the printGraph output it
// shows is what printGraph prints for the tour's graph, and the pipeline section's search table and
// pictures are what the commands it names print and draw. (Its code blocks are type-checked against
// the packed package by test/package/check.sh.)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.ts';
import { GraphBuilder, listOps, printGraph } from '../src/index.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The text of the section under `## title`, up to the next `## `. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  expect(start, `README section '${title}'`).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

/** Runs `backflow` in this process; what it printed on stdout. */
async function backflow(argv: string[]): Promise<string> {
  const out: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  try {
    expect(await main(argv), `backflow ${argv.join(' ')}`).toBe(0);
  } finally {
    log.mockRestore();
  }
  return out.join('\n');
}

/** A command's arguments after `backflow`, its --svg file moved into `dir`. */
function argsOf(command: string, dir: string): { argv: string[]; svg: string | null } {
  const argv = command.replace(/\\\n/g, ' ').trim().split(/\s+/);
  const at = argv.indexOf('--svg');
  const svg = at === -1 ? null : join(dir, argv[at + 1]!);
  if (svg !== null) argv[at + 1] = svg;
  return { argv, svg };
}

const dir = mkdtempSync(join(tmpdir(), 'backflow-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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

  it("shows `backflow simulate --search`'s table as the command prints it, and its best step's picture as it draws it", async () => {
    const pipelines = section('Pipelines, the simulator and traces');
    const found = /```sh\nnpm run backflow -- (simulate --search [^`]*?)\n```\n\n```\n([^`]*?)\n```/.exec(
      pipelines,
    );
    expect(found, 'the search command and its output').not.toBeNull();
    const { argv, svg } = argsOf(found![1]!, dir);
    const printed = await backflow(argv);
    // The command also says where it wrote the timeline, which the README leaves out.
    expect(printed.replace(/\ntimeline written to .*$/, '')).toBe(found![2]);
    const picture = /!\[[^\]]*the search's best[^\]]*\]\((examples\/pictures\/[^)]+\.svg)\)/.exec(pipelines);
    expect(picture, "the search's best step's picture").not.toBeNull();
    expect(readFileSync(svg!, 'utf8')).toBe(
      readFileSync(new URL(`../${picture![1]}`, import.meta.url), 'utf8'),
    );
  });

  it("shows ZB-V's simulated timeline as `backflow simulate` draws it, with the step time and idle share it prints", async () => {
    const pipelines = section('Pipelines, the simulator and traces');
    const claim = /`backflow (simulate --schedule zb-v[^`]*)`: (\d+) ms, ([\d.]+)% idle/.exec(pipelines);
    expect(claim, 'the ZB-V command and its figures').not.toBeNull();
    const picture = /!\[ZB-V[^\]]*\]\((examples\/pictures\/[^)]+\.svg)\)/.exec(pipelines);
    expect(picture, "ZB-V's picture").not.toBeNull();
    const svg = join(dir, 'zb-v.svg');
    const printed = await backflow([...argsOf(claim![1]!, dir).argv, '--svg', svg]);
    expect(Number(/step time +([\d.]+) ms/.exec(printed)?.[1])).toBe(Number(claim![2]));
    const idle = Number(/bubble +([\d.]+)% of the step idle/.exec(printed)?.[1]);
    expect(idle.toFixed(1)).toBe(claim![3]);
    expect(readFileSync(svg, 'utf8')).toBe(
      readFileSync(new URL(`../${picture![1]}`, import.meta.url), 'utf8'),
    );
  });
});
