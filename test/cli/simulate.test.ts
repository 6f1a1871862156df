// `backflow simulate` over each transport (Note [simulated transports]): the figures it prints, the
// closed form of a GPipe step over tcp, and its usage errors.
import { describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { TRANSPORT_DEFAULTS } from '../../src/sim/transport.ts';

/** Runs the CLI in this process and collects what it printed. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi
    .spyOn(console, 'error')
    .mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  try {
    return { code: await main(argv), out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

const stepTime = (out: string) => Number(/step time +(\d+\.\d+) ms/.exec(out)?.[1]);

describe('backflow simulate --transport', () => {
  it('GPipe over tcp: the step time of the closed form, and what the wire adds to it', async () => {
    const [p, m] = [8, 8];
    const { code, out } = await cli(
      'simulate',
      ...['--schedule', 'gpipe', '--workers', `${p}`, '--microbatches', `${m}`],
      ...['--activation-bytes', '1MiB', '--transport', 'tcp'],
    );
    expect(code).toBe(0);
    const { latencyMs, mbPerS } = TRANSPORT_DEFAULTS.tcp;
    const message = latencyMs + 2 ** 20 / (mbPerS * 1e3);
    const free = (m + p - 1) * 3;
    expect(stepTime(out)).toBeCloseTo(free + 2 * (p - 1) * message, 3);
    expect(out).toMatch(/bubble +\d+\.\d\d% of the step idle/);
    expect(out).toMatch(
      new RegExp(`on the wire +${2 * (p - 1) * m} messages of 1\\.0 MiB: ${message.toFixed(3)} ms each`),
    );
    expect(out).toMatch(
      new RegExp(
        `cost of the wire \\+${(2 * (p - 1) * message).toFixed(3)} ms .* free communication, ${free}\\.000 ms`,
      ),
    );
    expect(out).toMatch(/busiest +link 0->1/);
  });

  it('the same 1F1B pipeline run three times: nats slower than tcp, slower than threads', async () => {
    const run = (transport: string) =>
      cli(
        'simulate',
        '--stages',
        '16',
        '--microbatches',
        '16',
        '--activation-bytes',
        '256KiB',
        '--transport',
        transport,
      );
    // One after the other: each run spies on console.log.
    const threads = await run('threads');
    const tcp = await run('tcp');
    const nats = await run('nats');
    expect(stepTime(threads!.out)).toBe(93);
    expect(stepTime(tcp!.out)).toBeGreaterThan(93);
    expect(stepTime(nats!.out)).toBeGreaterThan(stepTime(tcp!.out));
    expect(threads!.out).toMatch(/transport +threads .*no bandwidth limit/);
    expect(threads!.out).not.toMatch(/busiest/);
    expect(nats!.out).toMatch(/transport +nats .*178 MB\/s shared by every link/);
    expect(nats!.out).toMatch(/busiest +the broker, busy \d+\.\d\d% of the step/);
  });

  it('64 workers over nats, with a latency and a bandwidth of its own', async () => {
    const { code, out } = await cli(
      'simulate',
      ...[
        '--workers',
        '64',
        '--microbatches',
        '64',
        '--transport',
        'nats',
        '--latency',
        '0.5',
        '--bandwidth',
        '100',
      ],
    );
    expect(code).toBe(0);
    expect(out).toMatch(/^1f1b: p=64 workers, m=64 microbatches, 64 stages$/m);
    expect(out).toMatch(/0\.5 ms per hop \(two per message\), 100 MB\/s shared/);
    expect(out).toMatch(
      /peak in flight +64 63 62 61 \.\.\. 4 3 2 1 microbatches on workers 0-3 \.\.\. 60-63/,
    );
  });

  it.each([
    [['--transport', 'pigeon'], /--transport: expected one of threads, tcp, nats, found 'pigeon'/],
    [['--workers', '3', '--stages', '4'], /--workers and --stages are the same flag: found 3 and 4/],
    [
      ['--activation-bytes', '1.5KB'],
      /--activation-bytes: expected a whole number of bytes >= 1.*found '1\.5KB'/,
    ],
    [['--bandwidth', '0'], /--bandwidth: expected a positive number, found '0'/],
  ])('%j exits 2 naming what was expected', async (flags, why) => {
    const { code, err } = await cli('simulate', ...flags);
    expect(code).toBe(2);
    expect(err).toMatch(why);
  });
});
