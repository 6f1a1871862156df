// examples/cnn-mnist.ts stays runnable: its --quick version (one short epoch on 512 digits) prints
// the model's summary, trains on 2 worker threads, prints the figures, writes the loss curve and
// exits cleanly. The model itself is checked against the reference in test/train/cnn-classifier.test.ts.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const EXAMPLE = fileURLToPath(new URL('../../examples/cnn-mnist.ts', import.meta.url));

it('examples/cnn-mnist.ts --quick: summary, training on 2 workers, test accuracy, throughput, loss curve', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'backflow-cnn-'));
  const svg = join(dir, 'loss.svg');
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', EXAMPLE, '--quick', '--out', svg], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, 'exit');
    expect(out).toMatch(
      /512 training digits \(1,024 examples with 1 shifted copy of each\), 256 test digits, 0 digits in both/,
    );
    expect(out).toMatch(/^conv0 +w f32\[5,5,1,6\], b f32\[6\] +156$/m);
    expect(out).toMatch(/^107,786 parameters in 10 tensors/m);
    expect(out).toMatch(/epoch 1\/1 16\/16 +100%/);
    expect(out).toMatch(/^test accuracy +\d+\.\d\d% \(\d+ of 256 held-out digits\)$/m);
    expect(out).toMatch(/^throughput +\d+ samples\/s/m);
    expect(readFileSync(svg, 'utf8')).toMatch(/^<svg/);
    expect(code).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
