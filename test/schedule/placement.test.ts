// Note [stage placement]: where stages run is a value ('loop', 'v' or an array) that the validator,
// the generators and insertCommunication all read.
import { describe, expect, it } from 'vitest';
import { formatSlot, type Slot } from '../../src/schedule/action.ts';
import { insertCommunication } from '../../src/schedule/communication.ts';
import { SCHEDULE_KINDS } from '../../src/schedule/config.ts';
import {
  generatePlacedSchedule,
  generateSchedule,
  schedulePlacement,
} from '../../src/schedule/generators.ts';
import {
  describePlacement,
  namePlacement,
  resolveStagePlacement,
  stagesPerWorker,
  workerOfStage,
} from '../../src/schedule/placement.ts';
import { validateSchedule } from '../../src/schedule/validate.ts';
import { chunksFor, grid, scheduleError, V2x4 } from '../support/schedules.ts';

const texts = (list: readonly Slot[]) => list.filter((a) => a !== null).map(formatSlot);

describe('resolveStagePlacement', () => {
  it("'loop' is stage s on worker s mod p", () => {
    expect(resolveStagePlacement('loop', 6, 3)).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it("'v' goes out and back: s for s < p, 2p-1-s for p <= s < 2p", () => {
    expect(resolveStagePlacement('v', 4, 2)).toEqual([0, 1, 1, 0]);
    expect(resolveStagePlacement('v', 8, 4)).toEqual([0, 1, 2, 3, 3, 2, 1, 0]);
    for (let p = 1; p <= 5; p++)
      resolveStagePlacement('v', 2 * p, p).forEach((w, s) => {
        expect(w).toBe(s < p ? s : 2 * p - 1 - s);
      });
  });

  it("'v' with more than two chunks zig-zags on; with one chunk it is the plain pipeline, like 'loop'", () => {
    expect(resolveStagePlacement('v', 6, 2)).toEqual([0, 1, 1, 0, 0, 1]);
    expect(resolveStagePlacement('v', 9, 3)).toEqual([0, 1, 2, 2, 1, 0, 0, 1, 2]);
    expect(resolveStagePlacement('v', 3, 3)).toEqual(resolveStagePlacement('loop', 3, 3));
  });

  it('an array is the placement itself, checked against the stages and workers', () => {
    expect(resolveStagePlacement([1, 0, 0, 1], 4, 2)).toEqual([1, 0, 0, 1]);
    expect(scheduleError(() => resolveStagePlacement([0, 1, 1], 4, 2)).message).toBe(
      'stage placement [0, 1, 1] has 3 entries, but there are 4 stages',
    );
    const err = scheduleError(() => resolveStagePlacement([0, 2, 1, 0], 4, 2));
    expect(err.message).toBe(
      'stage placement [0, 2, 1, 0] puts stage 1 on worker 2, but a replica has workers 0..1',
    );
    expect(err.context).toMatchObject({ rule: 'stage placement', stage: 1, found: 2 });
    expect(scheduleError(() => resolveStagePlacement('w' as unknown as 'v', 4, 2)).message).toContain(
      "stage placement must be 'loop', 'v' or an array of workers",
    );
  });

  it('names a resolved array when a named placement gives it', () => {
    expect(namePlacement([0, 1, 1, 0], 2)).toBe('v');
    expect(namePlacement([0, 1, 0, 1], 2)).toBe('loop');
    expect(namePlacement([1, 0, 0, 1], 2)).toBeNull();
  });

  it('the placement helpers take a placement', () => {
    expect(workerOfStage(2, 2, 'v')).toBe(1);
    expect(workerOfStage(3, 2, [1, 0, 0, 1])).toBe(1);
    expect(stagesPerWorker(2, 2, 'v')).toEqual([
      [0, 3],
      [1, 2],
    ]);
    expect(describePlacement(2, 2, 'v')).toBe('worker 0: stages 0, 3\nworker 1: stages 1, 2');
    expect(scheduleError(() => workerOfStage(4, 2, [1, 0, 0, 1])).message).toContain('no stage 4');
  });
});

describe('validateSchedule with a stage placement', () => {
  it('accepts a V schedule placed by v, and returns the placement as its shape', () => {
    const shape = validateSchedule(V2x4(4), { stagePlacement: 'v' });
    expect(shape).toMatchObject({ workers: 2, stages: 4, microbatches: 4, workerOfStage: [0, 1, 1, 0] });
    expect(validateSchedule(V2x4(2), { stagePlacement: [0, 1, 1, 0] }).workerOfStage).toEqual([0, 1, 1, 0]);
  });

  it('refuses an action outside the row its placement gives it, naming the action, the row and the worker', () => {
    const err = scheduleError(() => validateSchedule(V2x4(2), { stagePlacement: 'loop' }));
    expect(err.context).toMatchObject({ rule: 'placement', worker: 0, step: 3 });
    expect(err.message).toContain(
      "action 3F0 is in row 0 (step 3), but the stage placement 'loop' puts stage 3 on worker 1; " +
        "the rows place the stages as [0, 1, 1, 0], which is stagePlacement 'v'",
    );
    expect(err.message).toContain('>3F0<');
    // The rows' own placement has no name: the hint gives the array.
    const pairs = scheduleError(() =>
      validateSchedule(grid('0F0 1F0 1B0 0B0|2F0 3F0 3B0 2B0'), { stagePlacement: 'v' }),
    );
    expect(pairs.message).toContain(
      "action 1F0 is in row 0 (step 1), but the stage placement 'v' puts stage 1 on worker 1; " +
        'the rows place the stages as [0, 0, 1, 1] (an array stagePlacement)',
    );
  });

  it('takes the stage count from an array placement', () => {
    const err = scheduleError(() => validateSchedule(V2x4(2), { stagePlacement: [0, 1, 1] }));
    expect(err.message).toContain(
      'action 3F0 on worker 0, step 3: stage 3 is out of range 0..2 (the stage placement [0, 1, 1] has 3 stages)',
    );
  });

  it('needs no send or receive at the turn of the V, and refuses one there', () => {
    const lowered = insertCommunication(grid('0F0 3F0 3B0 0B0|1F0 2F0 2B0 1B0'));
    expect(lowered.map(texts)).toEqual([
      ['0F0', '0SEND_F0', '3RECV_F0', '3F0', '3B0', '3SEND_B0', '0RECV_B0', '0B0'],
      ['1RECV_F0', '1F0', '2F0', '2SEND_F0', '2RECV_B0', '2B0', '1B0', '1SEND_B0'],
    ]);
    expect(validateSchedule(lowered, { stagePlacement: 'v' }).explicitCommunication).toBe(true);
    const needless = grid(
      '0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0|' +
        '1RECV_F0 1F0 1SEND_F0 2RECV_F0 2F0 2SEND_F0 2RECV_B0 2B0 1B0 1SEND_B0',
    );
    const err = scheduleError(() => validateSchedule(needless, { stagePlacement: 'v' }));
    expect(err.context.rule).toBe('needless communication');
    expect(err.message).toContain('stages 1 and 2 are both on worker 1, so nothing crosses a port');
  });

  it('pairs each send with its receive across the workers the placement gives', () => {
    const lowered = insertCommunication(V2x4(2));
    const broken = lowered.map((row) => row.filter((a) => formatSlot(a) !== '3RECV_F1'));
    const err = scheduleError(() => validateSchedule(broken, { stagePlacement: 'v' }));
    expect(err.context.rule).toBe('matching receive');
    expect(err.message).toContain('2SEND_F1 on worker 1 has no matching 3RECV_F1 on worker 0');
  });
});

describe('generators say where their stages run', () => {
  it.each(SCHEDULE_KINDS)('%s', (kind) => {
    const config = { workers: 2, microbatches: 4, chunks: chunksFor(kind) };
    const placed = generatePlacedSchedule(kind, config);
    expect(placed.stagePlacement).toBe(schedulePlacement(kind));
    expect(placed.schedule).toEqual(generateSchedule(kind, config));
    const stages = config.workers * config.chunks;
    expect(
      validateSchedule(placed.schedule, { stages, stagePlacement: placed.stagePlacement }).workerOfStage,
    ).toEqual(resolveStagePlacement(placed.stagePlacement, stages, config.workers));
  });
});
