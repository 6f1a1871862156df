// examples/multi-process.ts runs: its own nats-server and two node processes, the first step bitwise
// equal to the single-process run, one epoch of training, everything stopped at the end.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { describeNats } from '../support/nats.ts';

const EXAMPLE = fileURLToPath(new URL('../../examples/multi-process.ts', import.meta.url));

describeNats('examples/multi-process.ts', () => {
  it('trains across two node processes; the first step equals the single-process run bit for bit', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', EXAMPLE, '--epochs', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, 'exit');
    expect(out).toMatch(
      /first step on 2 node processes \(data over tcp\): loss [\d.]+, 6 gradients bitwise equal/,
    );
    expect(out).toMatch(/test accuracy +\d+\.\d+%/);
    expect(out).toMatch(/\[node-a\] backflow node: stopping: told to stop/);
    expect(code).toBe(0);
  }, 60_000);
});
