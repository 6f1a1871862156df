// examples/simulate.ts stays runnable: its --quick version sweeps the bubbles of a few pipelines,
// checks GPipe and 1F1B against their closed form, measures a small MLP's step for real and searches
// the schedule for it, printing the ranked table and drawing the best one's step. The figures
// themselves are checked in test/sim (closed forms, the search's ranking, costs from a real trace).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const EXAMPLE = fileURLToPath(new URL('../../examples/simulate.ts', import.meta.url));

it('examples/simulate.ts --quick: the bubble tables, the closed form met, a measured step, the search and its winner drawn', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'backflow-simulate-example-'));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', EXAMPLE, '--quick', '--out', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, 'exit');
    expect(out).toMatch(/^ZB-H1\n {2}workers \\ microbatches/m);
    const worst = /against the closed form \(p-1\)\/\(m\+p-1\): largest difference (\S+)$/m.exec(out);
    expect(Number(worst?.[1])).toBeLessThan(1e-12);
    expect(out).toMatch(/^The MLP's step, measured \(4 steps in process\): forward \d+\.\d ms/m);
    expect(out).toMatch(/^rank {2}schedule {2,}microbatches {2}chunks {2}stages {2}step ms {2}bubble/m);
    // Every schedule kind is ranked.
    for (const kind of [
      'gpipe',
      '1f1b',
      'interleaved-1f1b',
      'zb-h1',
      'interleaved-zb',
      'looped-bfs',
      'zb-v',
      'dualpipe-v',
    ])
      expect(out).toMatch(new RegExp(`^ +\\d+ +${kind} +\\d+ +[12] +(8|16) +\\d+\\.\\d+ `, 'm'));
    const best =
      /^best within .* per worker: (\S+), (\d+) microbatches, (\d) chunks? per worker: [\d.]+ ms per step$/m.exec(
        out,
      );
    expect(best, out).not.toBeNull();
    expect(readFileSync(join(dir, 'bubbles.svg'), 'utf8')).toMatch(/^<svg/);
    expect(readFileSync(join(dir, 'search-best.svg'), 'utf8')).toContain(
      `${best![1]}, p=8, m=${best![2]}, chunks=${best![3]}: the search's best (simulated)`,
    );
    expect(code).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
