// Without nats-server on the PATH the test run still passes: the NATS tests skip, and one line at
// the end says which files were skipped and how to run them (test/support/nats-setup.ts).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VITEST = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');

it('a run without nats-server passes, skips the NATS tests and prints one line naming them', async () => {
  // A PATH holding only a shell: the setup's `command -v nats-server` finds nothing.
  const bin = mkdtempSync(join(tmpdir(), 'backflow-no-nats-'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  try {
    const child = spawn(process.execPath, [VITEST, 'run', 'test/protocol/nats-rpc.test.ts'], {
      cwd: ROOT,
      env: { ...process.env, PATH: bin, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, 'exit');
    expect(code, out).toBe(0);
    const lines = out.split('\n').filter((l) => l.includes('nats-server'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^nats-server is not on PATH: skipped the NATS tests in (test\/\S+\.test\.ts, )+test\/\S+\.test\.ts \(apt-get install nats-server to run them\)$/,
    );
    for (const file of ['test/runtime/nats-cluster.test.ts', 'test/protocol/nats-rpc.test.ts'])
      expect(lines[0]).toContain(file);
    expect(out).toMatch(/Tests\s+5 skipped \(5\)/);
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
}, 60_000);
