// `backflow simulate` over each transport (Note [simulated transports]): the figures it prints, the
// closed form of a GPipe step over tcp, and its usage errors; hand-written schedules from CSV, the
// costs of split backwards, `simulate --search` and `inspect --what schedule`.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
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

const dir = mkdtempSync(join(tmpdir(), 'backflow-simulate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stepTime = (out: string) => Number(/step time +(\d+\.\d+) ms/.exec(out)?.[1]);

describe('backflow simulate --transport', () => {
  it('GPipe over tcp: the step time of the closed form, and what the wire adds to it', async () => {
    const [p, m] = [8, 8];
    const { code, out } = await cli(
      'simulate',
      ...['--schedule', 'gpipe', '--workers', `${p}`, '--microbatches', `${m}`],
      ...['--activation-bytes', '512KiB', '--transport', 'tcp'],
    );
    expect(code).toBe(0);
    // Half a MiB crosses a link faster than a stage computes: nothing queues on the wire.
    const { latencyMs, mbPerS } = TRANSPORT_DEFAULTS.tcp;
    const message = latencyMs + 2 ** 19 / (mbPerS * 1e3);
    expect(2 ** 19 / (mbPerS * 1e3)).toBeLessThan(1);
    const free = (m + p - 1) * 3;
    expect(stepTime(out)).toBeCloseTo(free + 2 * (p - 1) * message, 3);
    expect(out).toMatch(/bubble +\d+\.\d\d% of the step idle/);
    expect(out).toMatch(
      new RegExp(`on the wire +${2 * (p - 1) * m} messages of 512\\.0 KiB: ${message.toFixed(3)} ms each`),
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
    expect(nats!.out).toMatch(/transport +nats .*241 MB\/s shared by every link/);
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

describe('backflow simulate: schedules and costs', () => {
  it('per-worker peaks: interleaved 1F1B, p = 4, m = 8, 2 chunks holds 11 9 7 5 microbatches', async () => {
    const { out } = await cli(
      'simulate',
      ...['--schedule', 'interleaved-1f1b', '--workers', '4', '--microbatches', '8', '--chunks', '2'],
    );
    expect(out).toMatch(/peak in flight +11 9 7 5 microbatches per worker/);
    // mul keeps its input (its weight is a parameter, not counted): 64 bytes per stage and microbatch.
    expect(out).toMatch(/peak activations +704 B 576 B 448 B 320 B kept per worker/);
  });

  it('ZB-H1 with --input and --weight: the closed form 3m + p - 1 for F = I = W', async () => {
    const { out } = await cli(
      'simulate',
      ...['--schedule', 'zb-h1', '--workers', '4', '--microbatches', '8', '--input', '1', '--weight', '1'],
    );
    expect(stepTime(out)).toBe(3 * 8 + 4 - 1);
    const slowW = await cli(
      'simulate',
      ...['--schedule', 'zb-h1', '--workers', '4', '--microbatches', '8', '--input', '1', '--weight', '3'],
    );
    expect(stepTime(slowW.out)).toBeGreaterThan(27);
  });

  it('--csv: a hand-written schedule, its sizes from its rows and actions, as fast as the generated one', async () => {
    const file = join(dir, 'two.csv');
    writeFileSync(file, '0F0,0F1,,0B0,0B1\n,1F0,1B0,1F1,1B1\n');
    const { code, out } = await cli('simulate', '--csv', file);
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`^${file}: p=2 workers, m=2 microbatches, 2 stages$`, 'm'));
    const generated = await cli('simulate', '--schedule', '1f1b', '--workers', '2', '--microbatches', '2');
    expect(stepTime(out)).toBe(stepTime(generated.out));
    const wrong = await cli('simulate', '--csv', file, '--workers', '3');
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/has 2 rows \(one per worker\), but --workers is 3/);
  });

  it('--stages still works, with a note that it is --workers', async () => {
    const { code, out, err } = await cli('simulate', '--stages', '2', '--microbatches', '2');
    expect(code).toBe(0);
    expect(out).toMatch(/^1f1b: p=2 workers/m);
    expect(err).toMatch(/--stages is deprecated; it means the pipeline workers, use --workers/);
  });
});

describe('backflow simulate --search', () => {
  // 1F1B on 4 workers, the whole model's F = 128 ms and B = 256 ms, 2.25 ms per task: the step takes
  // (m + 3)(96/m + 4.5) ms, fastest at m = 8; worker 0 keeps 1 GiB / m (test/sim/search.test.ts).
  it('prints the ranked table, the over-limit candidates, the answer, and draws it', async () => {
    const svg = join(dir, 'best.svg');
    const { code, out } = await cli(
      'simulate',
      ...['--search', '--workers', '4', '--schedules', '1f1b,gpipe', '--microbatches', '4,8,16,32'],
      ...['--forward', '128', '--backward', '256', '--overhead', '2.25'],
      ...['--kept-bytes', '1GiB', '--memory-limit', '100MiB', '--svg', svg],
    );
    expect(code).toBe(0);
    expect(out).toMatch(/^search: p=4 workers, 16 candidates$/m);
    expect(out).toMatch(/forward 128 ms, backward 256 ms, 2\.25 ms more per task; 1\.00 GiB kept/);
    const rows = [
      ...out.matchAll(/^ +(\d+) +(\S+) +(\d+) +\d+ +\d+ +(\d+\.\d+) .*?(over the limit|best)?$/gm),
    ].map((r) => `${r[2]} ${r[3]} ${r[4]}${r[5] ? ` ${r[5]}` : ''}`);
    expect(rows.slice(0, 4)).toEqual([
      '1f1b 8 181.500 over the limit',
      'gpipe 8 181.500 over the limit',
      '1f1b 16 199.500 best',
      '1f1b 4 199.500 over the limit',
    ]);
    expect(rows).toHaveLength(8);
    expect(out).toMatch(/^skipped 8:$/m);
    expect(out).toMatch(/^ {2}1f1b, chunks=2, m=4,8,16,32: 1F1B places one stage per worker/m);
    expect(out).toMatch(
      /^best within 100\.0 MiB per worker: 1f1b, 16 microbatches, 1 chunk per worker: 199\.500 ms per step$/m,
    );
    expect(existsSync(svg)).toBe(true);
    expect(readFileSync(svg, 'utf8')).toMatch(/^<svg[\s\S]*1f1b, p=4, m=16, chunks=1: the search's best/);
  });

  it.each([
    [['--memory-limit', '2GiB'], /--memory-limit needs --kept-bytes/],
    [['--microbatches', '4,x'], /--microbatches: expected integers >= 1 separated by commas, found '4,x'/],
    [['--schedules', '1f1b,zigzag'], /--schedules: expected one of gpipe, .*found 'zigzag'/],
    [['--csv', 'x.csv'], /--search generates its candidates: drop --csv/],
  ])('--search %j exits 2 naming what was expected', async (flags, why) => {
    const { code, err } = await cli('simulate', '--search', ...flags);
    expect(code).toBe(2);
    expect(err).toMatch(why);
  });

  it('search flags without --search are refused', async () => {
    const { code, err } = await cli('simulate', '--memory-limit', '2GiB');
    expect(code).toBe(2);
    expect(err).toMatch(/--memory-limit is for --search/);
    const list = await cli('simulate', '--microbatches', '4,8');
    expect(list.code).toBe(2);
    expect(list.err).toMatch(/--microbatches: a list \('4,8'\) is for --search/);
  });
});

describe('backflow inspect --what schedule', () => {
  it('prints the grid compute only, or with its sends and receives, and its dry run', async () => {
    const args = [
      'inspect',
      '--what',
      'schedule',
      '--schedule',
      '1f1b',
      '--workers',
      '2',
      '--microbatches',
      '2',
    ];
    const plain = await cli(...args);
    expect(plain.out).toMatch(/^worker 0 +0F0 +0F1 +\. +0B0 +\. +0B1$/m);
    expect(plain.out).not.toMatch(/SEND|RECV/);
    expect(plain.out).toMatch(
      /dry run \(F 1, B 2, I 1, W 1 ms .*\): step 9\.000 ms, 33\.33% idle, 2 1 microbatches/,
    );
    const comms = await cli(...args, '--comms');
    expect(comms.out).toMatch(/^worker 0 +0F0 +0SEND_F0 +0F1 +0SEND_F1 +0RECV_B0 +0B0/m);
    expect(comms.out).toMatch(/^worker 1 +1RECV_F0 +1F0 +1B0 +1SEND_B0/m);
  });

  it('reads a hand-written schedule from --csv, and names a bad cell', async () => {
    const file = join(dir, 'inspect.csv');
    writeFileSync(file, 'placement,v\n0F0,0F1,,3F0,3B0,3F1,3B1,0B0,,0B1\n,1F0,2F0,1F1,2F1,2B0,1B0,2B1,1B1\n');
    const { code, out } = await cli('inspect', '--what', 'schedule', '--csv', file);
    expect(code).toBe(0);
    expect(out).toMatch(/p=2 workers, m=2 microbatches/);
    expect(out).toMatch(/placement 'v'/);
    writeFileSync(file, '0F0,0X1\n');
    const bad = await cli('inspect', '--what', 'schedule', '--csv', file);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/row 1 \(worker 0\), column 2 \(step 1\): bad cell "0X1"/);
  });
});
