import { describe, expect, it } from 'vitest';
import { insertCommunication } from '../../src/schedule/communication.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { formatGrid, formatGridAround } from '../../src/schedule/grid.ts';
import { grid } from '../support/schedules.ts';

describe('formatGrid', () => {
  it('prints one aligned row per worker, idle as ".", ended lists blank', () => {
    expect(formatGrid(generateSchedule('1f1b', { workers: 2, microbatches: 2 }))).toBe(
      [
        'step      0     1     2     3     4     5',
        'worker 0  0F0   0F1   .     0B0   .     0B1',
        'worker 1  .     1F0   1B0   1F1   1B1',
      ].join('\n'),
    );
  });

  it('widens a column to its longest cell', () => {
    expect(formatGrid(insertCommunication(grid('0F0 0B0|1F0 1B0')))).toBe(
      [
        'step      0          1          2          3',
        'worker 0  0F0        0SEND_F0   0RECV_B0   0B0',
        'worker 1  1RECV_F0   1F0        1B0        1SEND_B0',
      ].join('\n'),
    );
  });

  it('marks cells', () => {
    const text = formatGrid(grid('0F0 0F1 0B0 0B1|. 1F0 1B0 1F1 1B1'), {
      marks: [
        { worker: 1, step: 2 },
        { worker: 1, step: 3 },
      ],
    });
    expect(text.split('\n')[2]).toBe('worker 1  .     1F0  >1B0< >1F1<  1B1');
  });

  it('prints a window of steps and a choice of workers', () => {
    const schedule = grid('0F0 0F1 0F2 0B0 0B1 0B2|1F0 1F1 1F2 1B0 1B1 1B2|2F0 2B0 2F1 2B1 2F2 2B2');
    expect(formatGrid(schedule, { from: 2, to: 4, workers: [2, 0] })).toBe(
      [
        'step      ...  2     3    ...',
        'worker 2  ...  2F1   2B1  ...',
        'worker 0  ...  0F2   0B0  ...',
      ].join('\n'),
    );
  });

  it('the empty schedule', () => {
    expect(formatGrid([])).toBe('step');
  });

  it('formatGridAround keeps a huge schedule readable', () => {
    const schedule = generateSchedule('1f1b', { workers: 64, microbatches: 64 });
    const text = formatGridAround(schedule, [{ worker: 30, step: 100 }]);
    const lines = text.split('\n');
    expect(lines.map((l) => l.split(/\s{2,}/)[0])).toEqual(['step', 'worker 29', 'worker 30', 'worker 31']);
    expect(lines[0]).toMatch(/^step\s+\.\.\.\s+90 .* 110\s+\.\.\.$/);
    expect(text).toContain('>');
  });
});
