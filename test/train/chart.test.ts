import { describe, expect, it } from 'vitest';
import { lossCurveSvg, niceTicks, terminalChart } from '../../src/train/chart.ts';

const curve = (n: number, f: (i: number) => number) =>
  Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: f(i + 1) }));

/** The text content of every <text> element, in order. */
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

describe('niceTicks', () => {
  it('1, 2, 5 x 10^k steps covering the range', () => {
    expect(niceTicks(0, 2)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(1, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.11, 0.93)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.3, 0.71)).toEqual([0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    expect(niceTicks(3, 3)).toEqual([2.6, 2.8, 3, 3.2, 3.4]);
  });
});

describe('lossCurveSvg', () => {
  it('draws axes, ticks, labels and title around one series', () => {
    const svg = lossCurveSvg(
      curve(100, (i) => 2 / i),
      { title: 'MLP on MNIST', width: 640, height: 400 },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="640" height="400"')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(texts(svg)).toEqual([
      'MLP on MNIST',
      'step',
      'loss',
      ...['0', '20', '40', '60', '80', '100'],
      ...['0.0', '0.5', '1.0', '1.5', '2.0'],
    ]);
    const paths = [...svg.matchAll(/<path class="series" data-name="([^"]*)" d="([^"]*)"/g)];
    expect(paths).toHaveLength(1);
    const d = paths[0]![2]!;
    expect(d.match(/[ML]/g)).toHaveLength(100);
    // step 1, loss 2 -> x = 64 + (1/100) * 556, y = the top of the plot (36).
    expect(d.startsWith('M69.56 36L')).toBe(true);
    // One series: no legend.
    expect(svg).not.toContain('stroke-width="2"');
  });

  it('several series, each its own colour, with a legend; names are escaped', () => {
    const svg = lossCurveSvg(
      [
        { name: 'train', points: curve(10, (i) => 1 / i) },
        { name: 'test <held out> & "more"', points: curve(10, (i) => 1.2 / i) },
      ],
      { yLabel: 'cross-entropy' },
    );
    const paths = [...svg.matchAll(/<path class="series" data-name="([^"]*)"[^>]*stroke="(#[0-9a-f]{6})"/g)];
    expect(paths.map((p) => p[1])).toEqual(['train', 'test &lt;held out&gt; &amp; &quot;more&quot;']);
    expect(new Set(paths.map((p) => p[2])).size).toBe(2);
    expect(texts(svg)).toContain('train');
    expect(texts(svg)).toContain('test &lt;held out&gt; &amp; &quot;more&quot;');
    expect(texts(svg)).toContain('cross-entropy');
    expect(svg).not.toMatch(/<[^>]*<held/);
  });

  it('non-finite losses break the line; a log axis has decade ticks', () => {
    const points = curve(6, (i) => (i === 3 ? Number.NaN : 10 ** -i));
    const d = /class="series"[^>]*d="([^"]*)"/.exec(lossCurveSvg(points))![1]!;
    expect(d.match(/M/g)).toHaveLength(2);
    expect(d.match(/L/g)).toHaveLength(3);
    const log = lossCurveSvg(points, { logY: true });
    expect(texts(log).slice(-6)).toEqual(['1e-6', '1e-5', '1e-4', '0.001', '0.01', '0.1']);
  });

  it('no data gives an empty chart that says so', () => {
    expect(lossCurveSvg([])).toContain('>no data</text>');
    expect(lossCurveSvg(curve(3, () => Number.NaN))).toContain('>no data</text>');
  });

  it('is deterministic', () => {
    expect(lossCurveSvg(curve(50, (i) => Math.sin(i)))).toBe(lossCurveSvg(curve(50, (i) => Math.sin(i))));
  });
});

describe('terminalChart', () => {
  it('a rising line from the bottom-left dot to the top-right dot', () => {
    // 2 columns x 1 row is 4 x 4 dots; four values 0..3 climb one dot per column.
    expect(terminalChart([0, 1, 2, 3], { width: 2, height: 1 })).toBe(
      `3 ┤${String.fromCharCode(0x2800 + 0x40 + 0x20, 0x2800 + 0x02 + 0x08)}`,
    );
  });

  it('has `height` rows of the same width, labelled with the maximum and minimum', () => {
    const values = Array.from({ length: 500 }, (_, i) => 2.5 * Math.exp(-i / 100));
    const lines = terminalChart(values, { width: 40, height: 8 }).split('\n');
    expect(lines).toHaveLength(8);
    // 2.5 e^(-499/100) = 0.01701...
    expect(lines[0]!.startsWith('    2.5 ┤')).toBe(true);
    expect(lines[1]!.startsWith('        ┤')).toBe(true);
    expect(lines[7]!.startsWith('0.01701 ┤')).toBe(true);
    for (const l of lines) expect([...l].length).toBe('0.01701 ┤'.length + 40);
    // A falling curve: the top row is drawn at the left, the bottom row at the right.
    expect(lines[0]!.charCodeAt(9)).not.toBe(0x2800);
    expect(lines[7]!.charCodeAt(lines[7]!.length - 1)).not.toBe(0x2800);
    expect(lines[0]!.charCodeAt(lines[0]!.length - 1)).toBe(0x2800);
  });

  it('leaves gaps at non-finite values, handles constants, and says when there is nothing', () => {
    const gap = terminalChart([1, 2, Number.NaN, Number.NaN, 3, 4], { width: 3, height: 1 });
    expect(gap.charCodeAt(gap.length - 2)).toBe(0x2800);
    expect(terminalChart([5, 5, 5], { width: 4, height: 2 }).split('\n')).toHaveLength(2);
    expect(terminalChart([])).toBe('(no data)');
    expect(terminalChart([Number.NaN])).toBe('(no data)');
  });
});
