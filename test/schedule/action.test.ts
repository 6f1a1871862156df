import { describe, expect, it } from 'vitest';
import {
  ACTION_KINDS,
  action,
  actionsOf,
  formatAction,
  formatSlot,
  overlap,
  parseAction,
  parseSlot,
  type Schedule,
} from '../../src/schedule/action.ts';
import { insertCommunication } from '../../src/schedule/communication.ts';
import {
  placedScheduleFromCsv,
  placedScheduleToCsv,
  scheduleFromCsv,
  scheduleToCsv,
} from '../../src/schedule/csv.ts';
import { generateSchedule } from '../../src/schedule/generators.ts';
import { DUAL_PIPE_V2x4, grid, scheduleError, V2x4 } from '../support/schedules.ts';

describe('action text', () => {
  it.each(ACTION_KINDS)('%s round-trips through format and parse', (kind) => {
    for (const [stage, microbatch] of [
      [0, 0],
      [1, 3],
      [12, 345],
    ] as const) {
      const a = action(kind, stage, microbatch);
      const text = formatAction(a);
      expect(text).toBe(`${stage}${kind}${microbatch}`);
      expect(parseAction(text)).toEqual(a);
    }
  });

  it('reads the PyTorch forms', () => {
    expect(parseAction('1F0')).toEqual({ kind: 'F', stage: 1, microbatch: 0 });
    expect(parseAction('0SEND_F3')).toEqual({ kind: 'SEND_F', stage: 0, microbatch: 3 });
    expect(parseAction(' 2I1 ')).toEqual({ kind: 'I', stage: 2, microbatch: 1 });
    expect(parseAction('2W1')).toEqual({ kind: 'W', stage: 2, microbatch: 1 });
    expect(parseAction('3RECV_B10')).toEqual({ kind: 'RECV_B', stage: 3, microbatch: 10 });
  });

  it.each(['', 'F0', '1F', '1X0', '1SEND0', '-1F0', '1F0x', '1 F0', '1.5F0'])('rejects %j', (text) => {
    const err = scheduleError(() => parseAction(text));
    expect(err.message).toContain(`bad action ${JSON.stringify(text)}`);
    expect(err.message).toContain('expected <stage><kind><microbatch> such as 1F0 or 0SEND_F3');
    expect(err.context.rule).toBe('action text');
  });

  it('says kinds are upper case', () => {
    expect(scheduleError(() => parseAction('1f0')).message).toContain('(kinds are upper case)');
  });
});

describe('overlapped pairs (Note [overlapped F and B])', () => {
  it("round-trip through PyTorch's text form, and run forward first", () => {
    const pair = overlap(action('F', 0, 3), action('B', 7, 1));
    expect(formatSlot(pair)).toBe('(0F3;7B1)OVERLAP_F_B');
    expect(parseSlot(' (0F3;7B1)OVERLAP_F_B ')).toEqual(pair);
    expect(parseSlot('(0F3;7I1)OVERLAP_F_B')).toEqual(overlap(action('F', 0, 3), action('I', 7, 1)));
    expect(parseSlot('2W1')).toEqual(action('W', 2, 1));
    expect(actionsOf(pair)).toEqual([action('F', 0, 3), action('B', 7, 1)]);
    expect(actionsOf(null)).toEqual([]);
  });

  it('pair a forward with a backward B or I, nothing else', () => {
    const err = scheduleError(() => parseSlot('(7B1;0F3)OVERLAP_F_B'));
    expect(err.message).toBe(
      'bad action "(7B1;0F3)OVERLAP_F_B": OVERLAP_F_B pairs a forward F with a backward B or I, found 7B1 and 0F3',
    );
    expect(err.context.rule).toBe('action text');
    expect(scheduleError(() => parseSlot('(0F3;0W1)OVERLAP_F_B')).message).toContain('found 0F3 and 0W1');
    expect(scheduleError(() => parseSlot('(0F3)OVERLAP_F_B')).message).toContain(
      'bad action "(0F3)OVERLAP_F_B"',
    );
    expect(scheduleError(() => parseSlot('(0F3;0X1)OVERLAP_F_B')).message).toContain('bad action "0X1"');
  });

  it('are one CSV cell', () => {
    const schedule = DUAL_PIPE_V2x4();
    const csv = scheduleToCsv(schedule);
    expect(csv.split('\n')[0]).toContain(',(0F3;3B1)OVERLAP_F_B,(3F2;0B0)OVERLAP_F_B,');
    expect(scheduleFromCsv(csv)).toEqual(schedule);
    expect(placedScheduleFromCsv(placedScheduleToCsv({ schedule, stagePlacement: 'v' }))).toEqual({
      schedule,
      stagePlacement: 'v',
    });
  });
});

describe('CSV', () => {
  it('round-trips generated schedules, with idle slots and with communication', () => {
    const schedules: Schedule[] = [
      generateSchedule('1f1b', { workers: 4, microbatches: 6 }),
      generateSchedule('zb-h1', { workers: 3, microbatches: 5 }),
      generateSchedule('interleaved-1f1b', { workers: 2, microbatches: 4, chunks: 2 }),
      insertCommunication(generateSchedule('gpipe', { workers: 3, microbatches: 2 })),
    ];
    for (const schedule of schedules) {
      const csv = scheduleToCsv(schedule);
      expect(scheduleFromCsv(csv)).toEqual(schedule);
      expect(scheduleToCsv(scheduleFromCsv(csv))).toBe(csv);
    }
  });

  it('writes one row per worker, empty cells for idle steps', () => {
    expect(scheduleToCsv(grid('0F0 0F1 . 0B0 0B1|. 1F0 1B0 1F1 1B1'))).toBe(
      '0F0,0F1,,0B0,0B1\n,1F0,1B0,1F1,1B1\n',
    );
  });

  it('reads hand-written CSV: spaces, quotes, CRLF, trailing commas, no final newline', () => {
    const csv = ' 0F0 , "0F1",,0B0,0B1,,\r\n,1F0,1B0,1F1,1B1';
    expect(scheduleFromCsv(csv)).toEqual(grid('0F0 0F1 . 0B0 0B1|. 1F0 1B0 1F1 1B1'));
  });

  it('keeps workers with nothing to do, and the empty schedule', () => {
    const schedule = [[action('F', 0, 0)], [], [null, action('F', 2, 0)]];
    expect(scheduleFromCsv(scheduleToCsv(schedule))).toEqual(schedule);
    expect(scheduleFromCsv(scheduleToCsv([]))).toEqual([]);
  });

  it('drops trailing idle steps, which mean nothing', () => {
    expect(scheduleToCsv([[action('F', 0, 0), null, null]])).toBe('0F0\n');
  });

  it('names the row, column and cell of a bad cell', () => {
    const err = scheduleError(() => scheduleFromCsv('0F0,0F1\n,1F0,1X1,1B0\n'));
    expect(err.message).toContain('row 2 (worker 1), column 3 (step 2): bad cell "1X1"');
    expect(err.message).toContain('expected an empty cell (idle) or <stage><kind><microbatch>');
    expect(err.context).toMatchObject({
      rule: 'csv cell',
      row: 2,
      column: 3,
      worker: 1,
      step: 2,
      found: '1X1',
    });
  });

  it('a first line names the stage placement: placement,v or placement,<workers>; without it, loop', () => {
    const v = V2x4(2);
    const csv = placedScheduleToCsv({ schedule: v, stagePlacement: 'v' });
    expect(csv.split('\n')[0]).toBe('placement,v');
    expect(placedScheduleFromCsv(csv)).toEqual({ schedule: v, stagePlacement: 'v' });
    const array = placedScheduleFromCsv('"placement", 1,0,0,1\r\n1F0,1B0\n0F0,0B0\n');
    expect(array).toEqual({ schedule: grid('1F0 1B0|0F0 0B0'), stagePlacement: [1, 0, 0, 1] });
    expect(placedScheduleFromCsv(scheduleToCsv(v))).toEqual({ schedule: v, stagePlacement: 'loop' });
    // The rows keep their numbers: the placement line is row 1.
    expect(scheduleError(() => placedScheduleFromCsv('placement,v\n0F0,0X0')).message).toContain(
      'row 2 (worker 0), column 2 (step 1): bad cell "0X0"',
    );
    expect(scheduleError(() => placedScheduleFromCsv('placement,w\n0F0')).message).toContain(
      'row 1 "placement,w": expected placement,<name> (loop or v) or placement,<worker of stage 0>,',
    );
    expect(scheduleError(() => scheduleFromCsv(csv)).message).toContain('read it with placedScheduleFromCsv');
  });

  it('rejects lower-case and semicolon-separated cells', () => {
    expect(scheduleError(() => scheduleFromCsv('0f0')).message).toContain('row 1 (worker 0), column 1');
    expect(scheduleError(() => scheduleFromCsv('0F0;0F1')).message).toContain('bad cell "0F0;0F1"');
  });
});
