import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  formatDuration,
  formatProgress,
  formatValue,
  ProgressBar,
  type ProgressStream,
} from '../../src/train/progress.ts';

function fakeStream(
  isTTY: boolean,
  columns?: number,
): ProgressStream & { text: () => string; chunks: string[] } {
  const chunks: string[] = [];
  return { isTTY, columns, chunks, write: (c: string) => chunks.push(c), text: () => chunks.join('') };
}

function fakeClock() {
  let now = 1000;
  return { clock: () => now, advance: (ms: number) => (now += ms) };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('formatProgress', () => {
  const state = {
    label: 'epoch 1',
    unit: 'steps',
    done: 45,
    total: 100,
    elapsedMs: 9000,
    fields: { loss: 0.123456, acc: '91.2%' },
  };

  it('a plain line: count, percent, fields, rate and eta', () => {
    expect(formatProgress(state)).toBe('epoch 1 45/100  45%  loss 0.1235  acc 91.2%  5.00 steps/s  eta 11s');
  });

  it('with a width: a bar filling the room left, cut to the width', () => {
    const line = formatProgress(state, 100);
    expect(line.length).toBeLessThanOrEqual(100);
    expect(line).toMatch(/^epoch 1 \[█+[▏▎▍▌▋▊▉]? *\] {2}45\/100/);
    const inside = line.slice(line.indexOf('[') + 1, line.indexOf(']'));
    expect(inside.length).toBe(
      100 - 'epoch 1 '.length - '45/100  45%  loss 0.1235  acc 91.2%  5.00 steps/s  eta 11s'.length - 4,
    );
    // 45% of the bar is filled: whole blocks plus an eighth-block remainder.
    const eighths = Math.round(0.45 * inside.length * 8);
    expect(inside.replace(/ /g, '').length).toBe(Math.floor(eighths / 8) + (eighths % 8 ? 1 : 0));
    expect(formatProgress(state, 200).indexOf(']') - formatProgress(state, 200).indexOf('[') - 1).toBe(40); // at most 40 wide
  });

  it('drops the bar when the terminal is narrow, and never exceeds the width', () => {
    expect(formatProgress(state, 70)).toBe(
      'epoch 1 45/100  45%  loss 0.1235  acc 91.2%  5.00 steps/s  eta 11s',
    );
    expect(formatProgress(state, 20)).toBe('epoch 1 45/100  45% ');
    expect(formatProgress({ ...state, done: 100 }, 200)).toContain(
      '[████████████████████████████████████████]',
    );
  });

  it('formats values and durations', () => {
    expect(formatValue(0.000012345)).toBe('1.234e-5');
    expect(formatValue(12)).toBe('12');
    expect(formatValue(Number.NaN)).toBe('NaN');
    expect(formatValue(2.5)).toBe('2.5');
    expect([5, 65, 3725, Number.POSITIVE_INFINITY].map(formatDuration)).toEqual([
      '5s',
      '1m05s',
      '1h02m',
      '?',
    ]);
    expect(formatProgress({ ...state, done: 100, elapsedMs: 65000, fields: {} })).toBe(
      'epoch 1 100/100  100%  1.54 steps/s  1m05s',
    );
    expect(
      formatProgress({ ...state, done: 20000, total: 40000, elapsedMs: 1000, fields: {}, label: '' }),
    ).toBe('20000/40000  50%  20.0k steps/s  eta 1s');
  });
});

describe('ProgressBar', () => {
  it('on a TTY redraws one line in place with \\r, at most every 100 ms, and ends it on finish', () => {
    const out = fakeStream(true, 60);
    const { clock, advance } = fakeClock();
    const bar = new ProgressBar({ total: 10, label: 'train', stream: out, clock, interactive: true });
    bar.update(1, { loss: 2 });
    advance(50);
    bar.update(2, { loss: 1.5 }); // within 100 ms of the last draw: not drawn
    advance(60);
    bar.update(3, { loss: 1 });
    expect(out.chunks).toHaveLength(2);
    for (const c of out.chunks) {
      expect(c.startsWith('\r')).toBe(true);
      expect(c.endsWith('\x1b[K')).toBe(true);
      expect(c.includes('\n')).toBe(false);
      expect(c.length - '\r'.length - '\x1b[K'.length).toBeLessThanOrEqual(59);
    }
    expect(out.chunks[1]).toContain('3/10');
    bar.log('epoch 1 done');
    expect(out.chunks.slice(2)).toEqual(['\r\x1b[Kepoch 1 done\n', out.chunks[1]]);
    advance(1000);
    bar.finish({ loss: 0.5 });
    expect(out.text().endsWith('\n')).toBe(true);
    expect(out.chunks.at(-2)).toContain('loss 0.5');
    const before = out.chunks.length;
    bar.update(10);
    expect(out.chunks.length).toBe(before);
  });

  it('on a terminal that reports 0 columns draws as on 80 (not an empty line)', () => {
    const out = fakeStream(true, 0);
    const bar = new ProgressBar({
      total: 10,
      label: 'epoch 1/6',
      stream: out,
      clock: fakeClock().clock,
      interactive: true,
    });
    bar.update(3, { 'step loss': 0.25 });
    const line = out.chunks[0]!.slice('\r'.length, -'\x1b[K'.length);
    expect(line).toContain('epoch 1/6 [');
    expect(line).toContain('3/10  30%  step loss 0.25');
    expect([...line].length).toBeLessThanOrEqual(79);
  });

  it('on a pipe prints a plain line every 5 s (no \\r), and the final line on finish', () => {
    const out = fakeStream(false);
    const { clock, advance } = fakeClock();
    const bar = new ProgressBar({ total: 100, stream: out, clock });
    for (let i = 1; i <= 99; i++) {
      advance(200); // 99 updates over 19.8 s
      bar.update(i, { loss: 1 / i });
    }
    bar.finish();
    const lines = out.text().split('\n').filter(Boolean);
    expect(out.text()).not.toContain('\r');
    // At 0.2 s (the first), then every 5 s: 5.2, 10.2, 15.2; then finish.
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['1/100', '26/100', '51/100', '76/100', '99/100']);
    expect(lines[1]).toBe('26/100  26%  loss 0.03846  5.00 steps/s  eta 15s');
  });

  it('picks plain lines in CI even on a TTY, and redraws on a TTY otherwise', () => {
    const draw = () => {
      const out = fakeStream(true, 80);
      const bar = new ProgressBar({ total: 2, stream: out, clock: fakeClock().clock });
      bar.update(1);
      return out.text();
    };
    vi.stubEnv('CI', 'true');
    expect(draw()).toMatch(/^1\/2 .*\n$/);
    vi.stubEnv('CI', '');
    const tty = draw();
    expect(tty.startsWith('\r[█')).toBe(true);
    expect(tty.endsWith('\x1b[K')).toBe(true);
  });

  it('a log line on a pipe is just a line', () => {
    const out = fakeStream(false);
    const bar = new ProgressBar({ total: 2, stream: out, clock: fakeClock().clock });
    bar.update(1);
    bar.log('hello');
    expect(out.chunks).toEqual(['1/2  50%  0s\n', 'hello\n']);
  });
});
