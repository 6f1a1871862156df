import { describe, expect, it } from 'vitest';
import {
  actionsOf,
  formatSlot,
  isCommunication,
  parseAction,
  type Schedule,
  type Slot,
} from '../../src/schedule/action.ts';
import { insertCommunication, stripCommunication } from '../../src/schedule/communication.ts';
import { SCHEDULE_KINDS, type ScheduleKind } from '../../src/schedule/config.ts';
import {
  generateSchedule,
  schedule1F1B,
  scheduleGPipe,
  scheduleInterleaved1F1B,
  scheduleZBH1,
} from '../../src/schedule/generators.ts';
import {
  describePlacement,
  scheduleShape,
  stagesOfWorker,
  stagesPerWorker,
  workerOfStage,
} from '../../src/schedule/placement.ts';
import { validateSchedule } from '../../src/schedule/validate.ts';
import { scheduleError } from '../support/schedules.ts';

const actions = (list: readonly Slot[]) => list.filter((a) => a !== null);
const texts = (list: readonly Slot[]) => actions(list).map(formatSlot);

/** Every valid configuration with p workers up to 5, m up to 2p+1, v up to 3. */
function configs(kind: ScheduleKind): { workers: number; microbatches: number; chunks: number }[] {
  const out = [];
  for (let p = 1; p <= 5; p++)
    for (let m = 1; m <= 2 * p + 1; m++)
      for (const v of kind === 'interleaved-1f1b' ? [1, 2, 3] : [1]) {
        // The configuration rules: 1F1B-like schedules need m >= p, interleaved a multiple of p.
        const ok = kind === 'gpipe' || (kind === 'interleaved-1f1b' && v > 1 ? m % p === 0 : m >= p);
        if (ok) out.push({ workers: p, microbatches: m, chunks: v });
      }
  return out;
}

describe.each(SCHEDULE_KINDS)('%s', (kind) => {
  it('validates for every configuration, compute-only and with communication', () => {
    for (const config of configs(kind)) {
      const stages = config.workers * config.chunks;
      const schedule = generateSchedule(kind, config);
      expect(schedule).toHaveLength(config.workers);
      const shape = validateSchedule(schedule, { stages, microbatches: config.microbatches });
      expect(shape.workerOfStage).toEqual(Array.from({ length: stages }, (_, s) => s % config.workers));
      const lowered = insertCommunication(schedule);
      validateSchedule(lowered, { stages, microbatches: config.microbatches });
      expect(stripCommunication(lowered)).toEqual(schedule.map(actions));
    }
  });

  it('is a pure function of its configuration', () => {
    const config = { workers: 4, microbatches: 8, chunks: kind === 'interleaved-1f1b' ? 2 : 1 };
    expect(generateSchedule(kind, config)).toEqual(generateSchedule(kind, config));
  });
});

describe('generated orders', () => {
  it('GPipe: every forward, then every backward', () => {
    const schedule = scheduleGPipe({ workers: 2, microbatches: 3 });
    expect(texts(schedule[1]!)).toEqual(['1F0', '1F1', '1F2', '1B0', '1B1', '1B2']);
  });

  it('1F1B: p-1-w warmup forwards, then alternating, then the drain', () => {
    const p = 4;
    const schedule = schedule1F1B({ workers: p, microbatches: 6 });
    schedule.forEach((list, w) => {
      const kinds = actions(list).map((a) => a.kind);
      expect(kinds.indexOf('B')).toBe(p - w);
    });
    expect(texts(schedule[1]!)).toEqual('1F0 1F1 1F2 1B0 1F3 1B1 1F4 1B2 1F5 1B3 1B4 1B5'.split(' '));
    expect(texts(schedule[3]!)).toEqual('3F0 3B0 3F1 3B1 3F2 3B2 3F3 3B3 3F4 3B4 3F5 3B5'.split(' '));
  });

  it('1F1B: the grid is lined up in time', () => {
    const schedule = schedule1F1B({ workers: 2, microbatches: 2 });
    expect(schedule.map((list) => list.map((a) => (a ? formatSlot(a) : '.')).join(' '))).toEqual([
      '0F0 0F1 . 0B0 . 0B1',
      '. 1F0 1B0 1F1 1B1',
    ]);
  });

  it('interleaved 1F1B: looping placement, chunks in rounds of p microbatches', () => {
    const schedule = scheduleInterleaved1F1B({ workers: 2, microbatches: 4, chunks: 2 });
    expect(scheduleShape(schedule).workerOfStage).toEqual([0, 1, 0, 1]);
    // Worker 0 warms up with 2(p-1) + (v-1)p = 4 forwards: chunk 0 for microbatches 0, 1, then chunk 1.
    expect(texts(schedule[0]!).slice(0, 5)).toEqual(['0F0', '0F1', '2F0', '2F1', '0F2']);
    // Backwards start on the last chunk.
    expect(actions(schedule[1]!).find((a) => a.kind === 'B')).toMatchObject({ stage: 3, microbatch: 0 });
  });

  it('interleaved with one chunk is 1F1B', () => {
    expect(scheduleInterleaved1F1B({ workers: 3, microbatches: 4, chunks: 1 })).toEqual(
      schedule1F1B({ workers: 3, microbatches: 4 }),
    );
  });

  it('ZB-H1: split backward, W of worker s deferred by s steps, every W present', () => {
    const schedule = scheduleZBH1({ workers: 3, microbatches: 4 });
    expect(texts(schedule[0]!)).toEqual('0F0 0F1 0F2 0I0 0W0 0F3 0I1 0W1 0I2 0W2 0I3 0W3'.split(' '));
    expect(texts(schedule[2]!)).toEqual('2F0 2I0 2F1 2I1 2F2 2I2 2W0 2F3 2I3 2W1 2W2 2W3'.split(' '));
    for (const list of schedule) expect(actions(list).some((a) => a.kind === 'B')).toBe(false);
  });
});

describe('insertCommunication', () => {
  it('sends after the producer and receives just before the consumer', () => {
    const lowered = insertCommunication(scheduleGPipe({ workers: 2, microbatches: 1 }));
    expect(lowered.map(texts)).toEqual([
      ['0F0', '0SEND_F0', '0RECV_B0', '0B0'],
      ['1RECV_F0', '1F0', '1B0', '1SEND_B0'],
    ]);
  });

  it('needs nothing between stages on the same worker', () => {
    const schedule: Schedule = [
      [
        { kind: 'F', stage: 0, microbatch: 0 },
        { kind: 'F', stage: 1, microbatch: 0 },
        { kind: 'B', stage: 1, microbatch: 0 },
        { kind: 'B', stage: 0, microbatch: 0 },
      ],
    ];
    expect(insertCommunication(schedule)).toEqual(schedule);
  });

  it('lowers any placement: a V shape with stages 0, 3 on worker 0 and 1, 2 on worker 1', () => {
    const v = [
      ['0F0', '3F0', '3B0', '0B0'],
      ['1F0', '2F0', '2B0', '1B0'],
    ].map((row) => row.map(parseAction));
    const lowered = insertCommunication(v);
    expect(lowered.map(texts)).toEqual([
      ['0F0', '0SEND_F0', '3RECV_F0', '3F0', '3B0', '3SEND_B0', '0RECV_B0', '0B0'],
      ['1RECV_F0', '1F0', '2F0', '2SEND_F0', '2RECV_B0', '2B0', '1B0', '1SEND_B0'],
    ]);
    expect(validateSchedule(lowered).workerOfStage).toEqual([0, 1, 1, 0]);
  });

  it('refuses a schedule that already communicates', () => {
    const lowered = insertCommunication(schedule1F1B({ workers: 2, microbatches: 2 }));
    const err = scheduleError(() => insertCommunication(lowered));
    expect(err.message).toContain('already communicates (0SEND_F0 at worker 0, step 1)');
    expect(lowered.flat().flatMap(actionsOf).filter(isCommunication)).toHaveLength(8);
  });
});

describe('configuration errors, before anything is built', () => {
  it('1F1B needs microbatches >= stages', () => {
    const err = scheduleError(() => schedule1F1B({ workers: 4, microbatches: 3 }));
    expect(err.message).toBe(
      '1F1B needs microbatches >= stages (m >= p): found microbatches = 3, stages = 4; use at least 4 ' +
        "microbatches, or 'gpipe', which accepts any count",
    );
    expect(err.context).toMatchObject({ rule: 'microbatches >= stages', microbatches: 3, stages: 4 });
    expect(() => scheduleGPipe({ workers: 4, microbatches: 3 })).not.toThrow();
  });

  it('ZB-H1 has the same rule', () => {
    expect(scheduleError(() => scheduleZBH1({ workers: 4, microbatches: 2 })).message).toMatch(
      /^ZB-H1 needs microbatches >= stages/,
    );
  });

  it('interleaved needs microbatches to be a multiple of workers', () => {
    const err = scheduleError(() => scheduleInterleaved1F1B({ workers: 4, microbatches: 6, chunks: 2 }));
    expect(err.message).toBe(
      'interleaved 1F1B needs microbatches to be a multiple of workers (m % p == 0): found ' +
        'microbatches = 6, workers = 4; use 4 or 8 microbatches, or chunks = 1 (plain 1F1B)',
    );
    expect(err.context).toMatchObject({ rule: 'microbatches % workers == 0', microbatches: 6, workers: 4 });
    expect(
      scheduleError(() => scheduleInterleaved1F1B({ workers: 4, microbatches: 3, chunks: 2 })).message,
    ).toContain('use 4 microbatches');
  });

  it('one stage per worker outside interleaved; counts are integers >= 1; known kinds only', () => {
    expect(scheduleError(() => scheduleGPipe({ workers: 2, microbatches: 2, chunks: 2 })).message).toContain(
      "GPipe places one stage per worker (chunks = 1), found chunks = 2; use 'interleaved-1f1b'",
    );
    expect(scheduleError(() => schedule1F1B({ workers: 0, microbatches: 2 })).message).toBe(
      '1F1B: workers must be an integer >= 1, found 0',
    );
    expect(scheduleError(() => scheduleGPipe({ workers: 2, microbatches: 2.5 })).context.rule).toBe(
      'microbatches >= 1',
    );
    expect(
      scheduleError(() => generateSchedule('pipedream' as ScheduleKind, { workers: 2, microbatches: 2 }))
        .message,
    ).toBe('unknown schedule "pipedream": expected one of gpipe, 1f1b, interleaved-1f1b, zb-h1');
  });
});

describe('placement', () => {
  it('loops stages over workers', () => {
    expect(workerOfStage(5, 4)).toBe(1);
    expect(stagesOfWorker(1, 4, 2)).toEqual([1, 5]);
    expect(stagesPerWorker(2, 3)).toEqual([
      [0, 2, 4],
      [1, 3, 5],
    ]);
    expect(stagesPerWorker(3)).toEqual([[0], [1], [2]]);
    expect(describePlacement(2, 2)).toBe('worker 0: stages 0, 2\nworker 1: stages 1, 3');
  });

  it('rejects impossible arguments', () => {
    expect(scheduleError(() => stagesOfWorker(4, 4)).message).toBe('stagesOfWorker: no worker 4 among 4');
    expect(scheduleError(() => workerOfStage(-1, 4)).message).toContain('stage must be an integer >= 0');
    expect(scheduleError(() => stagesPerWorker(0)).message).toBe('workers must be an integer >= 1, found 0');
  });
});
