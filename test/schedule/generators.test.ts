import { describe, expect, it } from 'vitest';
import { ScheduleError } from '../../src/errors.ts';
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
  scheduleDualPipeV,
  scheduleGPipe,
  scheduleInterleaved1F1B,
  scheduleInterleavedZB,
  scheduleLoopedBFS,
  schedulePlacement,
  scheduleZBH1,
  scheduleZBV,
} from '../../src/schedule/generators.ts';
import {
  describePlacement,
  resolveStagePlacement,
  scheduleShape,
  stagesOfWorker,
  stagesPerWorker,
  workerOfStage,
} from '../../src/schedule/placement.ts';
import { validateSchedule } from '../../src/schedule/validate.ts';
import { chunksFor, DUAL_PIPE_V2x4, scheduleError } from '../support/schedules.ts';

const actions = (list: readonly Slot[]) => list.filter((a) => a !== null);
const texts = (list: readonly Slot[]) => actions(list).map(formatSlot);

/** The chunks each kind is tried with. */
const CHUNK_CHOICES: Record<ScheduleKind, readonly number[]> = {
  gpipe: [1],
  '1f1b': [1],
  'interleaved-1f1b': [1, 2, 3],
  'zb-h1': [1],
  'interleaved-zb': [1, 2, 3],
  'looped-bfs': [1, 2, 3],
  'zb-v': [2],
  'dualpipe-v': [2],
};

/**
 * The configuration rules, written out again: 1F1B-like schedules need m >= p, interleaved ones with
 * chunks > 1 a multiple of their rounds max(1, floor(m/p)) (PyTorch's), DualPipeV m >= 2p.
 */
function accepts(kind: ScheduleKind, p: number, m: number, v: number): boolean {
  switch (kind) {
    case 'gpipe':
    case 'looped-bfs':
    case 'zb-v':
      return true;
    case '1f1b':
    case 'zb-h1':
      return m >= p;
    case 'interleaved-1f1b':
    case 'interleaved-zb':
      return v === 1 ? m >= p : m % Math.max(1, Math.floor(m / p)) === 0;
    case 'dualpipe-v':
      return m >= 2 * p;
  }
}

/** Every configuration with p workers up to 5, m up to 2p+3, the kind's chunks; and whether it is valid. */
function configs(kind: ScheduleKind) {
  const out = [];
  for (let p = 1; p <= 5; p++)
    for (let m = 1; m <= 2 * p + 3; m++)
      for (const v of CHUNK_CHOICES[kind])
        out.push({ config: { workers: p, microbatches: m, chunks: v }, ok: accepts(kind, p, m, v) });
  return out;
}

describe.each(SCHEDULE_KINDS)('%s', (kind) => {
  it('validates for every configuration its rules accept, compute-only and with communication', () => {
    let valid = 0;
    for (const { config, ok } of configs(kind)) {
      if (!ok) {
        expect(() => generateSchedule(kind, config)).toThrow(ScheduleError);
        continue;
      }
      valid++;
      const stages = config.workers * config.chunks;
      const schedule = generateSchedule(kind, config);
      expect(schedule).toHaveLength(config.workers);
      const shape = validateSchedule(schedule, { stages, microbatches: config.microbatches });
      expect(shape.workerOfStage).toEqual(
        resolveStagePlacement(schedulePlacement(kind), stages, config.workers),
      );
      const lowered = insertCommunication(schedule);
      validateSchedule(lowered, { stages, microbatches: config.microbatches });
      expect(stripCommunication(lowered)).toEqual(schedule.map(actions));
    }
    expect(valid).toBeGreaterThan(10);
  });

  it('is a pure function of its configuration', () => {
    const config = { workers: 4, microbatches: 8, chunks: chunksFor(kind) };
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

  it('one chunk is one round, whatever m >= p: ZB-H1 and the interleaved kinds run microbatches 0..m-1 in order (no fractional ones, as p = 3, m = 20 once gave)', () => {
    for (let p = 2; p <= 6; p++)
      for (let m = p; m <= 8 * p; m++)
        for (const kind of ['zb-h1', 'interleaved-zb', 'interleaved-1f1b'] as const) {
          const schedule = generateSchedule(kind, { workers: p, microbatches: m, chunks: 1 });
          const where = `${kind} p=${p} m=${m}`;
          for (const list of schedule) {
            const forwards = actions(list)
              .flatMap(actionsOf)
              .filter((a) => a.kind === 'F');
            expect(
              forwards.map((a) => a.microbatch),
              where,
            ).toEqual(Array.from({ length: m }, (_, mb) => mb));
          }
          expect(() => validateSchedule(schedule, { stages: p, microbatches: m }), where).not.toThrow();
        }
  });

  it("interleaved 1F1B with m not a multiple of p: PyTorch's rounds (p = 4, m = 10: 2 rounds of 5) and order", () => {
    const schedule = scheduleInterleaved1F1B({ workers: 4, microbatches: 10, chunks: 2 });
    // Worked out by hand from PyTorch's ScheduleInterleaved1F1B: warmup (v-1) 5 + 2 (p-1) = 11.
    expect(texts(schedule[0]!).join(' ')).toBe(
      '0F0 0F1 0F2 0F3 0F4 4F0 4F1 4F2 4F3 4F4 0F5 0F6 4B0 0F7 4B1 0F8 4B2 0F9 4B3 4F5 4B4 4F6 0B0 ' +
        '4F7 0B1 4F8 0B2 4F9 0B3 0B4 4B5 4B6 4B7 4B8 4B9 0B5 0B6 0B7 0B8 0B9',
    );
    // p = 4, m = 6 is one round of 6; m = 3, fewer microbatches than workers, one round of 3.
    expect(
      texts(scheduleInterleaved1F1B({ workers: 4, microbatches: 6, chunks: 2 })[3]!).slice(0, 8),
    ).toEqual('3F0 3F1 3F2 3F3 3F4 3F5 7F0 7B0'.split(' '));
    expect(texts(scheduleInterleaved1F1B({ workers: 4, microbatches: 3, chunks: 2 })[0]!).join(' ')).toBe(
      '0F0 0F1 0F2 4F0 4F1 4F2 4B0 4B1 4B2 0B0 0B1 0B2',
    );
  });

  it('interleaved zero bubble (ZB1P): one warmup forward per hop, W deferred by the worker index', () => {
    const schedule = scheduleInterleavedZB({ workers: 2, microbatches: 2, chunks: 2 });
    expect(texts(schedule[1]!).join(' ')).toBe('1F0 1F1 3F0 3I0 3F1 3I1 3W0 1I0 3W1 1I1 1W0 1W1');
    expect(scheduleInterleavedZB({ workers: 3, microbatches: 5, chunks: 1 })).toEqual(
      scheduleZBH1({ workers: 3, microbatches: 5 }),
    );
  });

  it('looped BFS: every forward of a chunk before the next, backwards from the last chunk and microbatch', () => {
    const schedule = scheduleLoopedBFS({ workers: 2, microbatches: 3, chunks: 2 });
    expect(scheduleShape(schedule).workerOfStage).toEqual([0, 1, 0, 1]);
    expect(texts(schedule[1]!).join(' ')).toBe('1F0 1F1 1F2 3F0 3F1 3F2 3B2 3B1 3B0 1B2 1B1 1B0');
  });

  it("ZB-V: two stages per worker in a V, PyTorch's order", () => {
    const schedule = scheduleZBV({ workers: 2, microbatches: 4 });
    expect(scheduleShape(schedule).workerOfStage).toEqual([0, 1, 1, 0]);
    expect(texts(schedule[0]!).join(' ')).toBe(
      '0F0 0F1 0F2 3F0 3I0 3W0 3F1 3I1 3W1 0F3 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3 0I2 0W2 0I3 0W3',
    );
    expect(texts(schedule[1]!).join(' ')).toBe(
      '1F0 2F0 1F1 2F1 2I0 2W0 1F2 1I0 1W0 2F2 2I1 2W1 1F3 1I1 1W1 2F3 2I2 2W2 1I2 2I3 1I3 1W2 2W3 1W3',
    );
    // Planned for max(m, 2p-1) microbatches; the actions of the ones that do not exist are dropped.
    expect(texts(scheduleZBV({ workers: 2, microbatches: 1 })[0]!).join(' ')).toBe('0F0 3F0 3I0 3W0 0I0 0W0');
  });

  it('DualPipeV: F of one chunk overlapped with B of the other in the main phase', () => {
    // Worker 0: (0F3;3B1)OVERLAP_F_B ...; on the last worker the main phase's first F and B run unpaired.
    const schedule = scheduleDualPipeV({ workers: 2, microbatches: 4 });
    expect(schedule.map(actions)).toEqual(DUAL_PIPE_V2x4().map(actions));
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

  it("interleaved needs microbatches to be a multiple of its rounds max(1, floor(m/p)), PyTorch's rule", () => {
    const err = scheduleError(() => scheduleInterleaved1F1B({ workers: 4, microbatches: 9, chunks: 2 }));
    expect(err.message).toBe(
      'interleaved 1F1B needs microbatches to be a multiple of its rounds, max(1, floor(m / p)) = 2 ' +
        '(Note [interleaved rounds]): found microbatches = 9, workers = 4; use 8 or 10 microbatches, or chunks = 1',
    );
    expect(err.context).toMatchObject({ rule: 'microbatches % rounds == 0', microbatches: 9, workers: 4 });
    expect(
      scheduleError(() => scheduleInterleavedZB({ workers: 4, microbatches: 13, chunks: 3 })).message,
    ).toMatch(/^interleaved zero bubble needs .* = 3 .* use 12 or 15 microbatches/);
    for (const microbatches of [1, 3, 6, 10, 12])
      expect(() => scheduleInterleaved1F1B({ workers: 4, microbatches, chunks: 2 })).not.toThrow();
  });

  it('the V schedules take two chunks (the default), DualPipeV at least 2p microbatches', () => {
    expect(scheduleZBV({ workers: 3, microbatches: 2 })).toEqual(
      scheduleZBV({ workers: 3, microbatches: 2, chunks: 2 }),
    );
    const err = scheduleError(() => scheduleZBV({ workers: 3, microbatches: 4, chunks: 1 }));
    expect(err.message).toBe(
      "ZB-V places two stages per worker in a V (chunks = 2), found chunks = 1; use 'interleaved-zb' or " +
        "'looped-bfs' for another number of model chunks per worker",
    );
    expect(err.context.rule).toBe('chunks = 2');
    expect(scheduleError(() => scheduleDualPipeV({ workers: 3, microbatches: 5 })).message).toBe(
      'DualPipeV needs microbatches >= stages (m >= 2p): found microbatches = 5, stages = 6; use at least 6 ' +
        "microbatches, or 'zb-v', which accepts any count",
    );
  });

  it('one stage per worker outside interleaved; counts are integers >= 1; known kinds only', () => {
    expect(scheduleError(() => scheduleGPipe({ workers: 2, microbatches: 2, chunks: 2 })).message).toContain(
      "GPipe places one stage per worker (chunks = 1), found chunks = 2; use 'interleaved-1f1b' or 'interleaved-zb'",
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
    ).toBe(
      'unknown schedule "pipedream": expected one of gpipe, 1f1b, interleaved-1f1b, zb-h1, interleaved-zb, ' +
        'looped-bfs, zb-v, dualpipe-v',
    );
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
