import { describe, expect, it } from 'vitest';
import { type Action, formatSlot, parseAction, type Schedule, type Slot } from '../../src/schedule/action.ts';
import { bubbleStats } from '../../src/schedule/bubble.ts';
import { insertCommunication } from '../../src/schedule/communication.ts';
import { generateSchedule, scheduleGPipe, scheduleZBH1 } from '../../src/schedule/generators.ts';
import { findScheduleProblems, validateSchedule } from '../../src/schedule/validate.ts';
import { DUAL_PIPE_V2x4, grid, scheduleError } from '../support/schedules.ts';

/** `schedule` with the slots at `i` and `j` of `worker` exchanged. */
function swap(schedule: Schedule, worker: number, i: number, j: number): Slot[][] {
  const copy = schedule.map((list) => [...list]);
  const row = copy[worker]!;
  [row[i], row[j]] = [row[j]!, row[i]!];
  return copy;
}

const indexOf = (list: readonly Slot[], text: string) => {
  const a = parseAction(text);
  return list.findIndex((s) => s?.kind === a.kind && s.stage === a.stage && s.microbatch === a.microbatch);
};

describe('validateSchedule accepts', () => {
  it('a hand-written 1F1B and returns its shape', () => {
    const shape = validateSchedule(grid('0F0 0F1 . 0B0 . 0B1|. 1F0 1B0 1F1 1B1'));
    expect(shape).toEqual({
      workers: 2,
      stages: 2,
      microbatches: 2,
      workerOfStage: [0, 1],
      explicitCommunication: false,
    });
  });

  it('a backward that is B for some microbatches and I + W for others', () => {
    expect(() => validateSchedule(grid('0F0 0F1 0B0 0I1 0W1'))).not.toThrow();
  });

  it('an overlapped pair (Note [overlapped F and B]): its halves count as actions of their stages', () => {
    const shape = validateSchedule(grid('0F0 (0F1;0B0)OVERLAP_F_B 0B1'));
    expect(shape).toMatchObject({ stages: 1, microbatches: 2 });
  });
});

describe('validateSchedule and overlapped pairs', () => {
  it('refuses a pair whose halves wait for each other: it starts when both can', () => {
    const err = scheduleError(() => validateSchedule(grid('(0F0;0B0)OVERLAP_F_B 0F1 0B1')));
    expect(err.context.rule).toBe('no deadlock');
    expect(err.message).toContain(
      'worker 0 waits at step 0 ((0F0;0B0)OVERLAP_F_B) for 0F0 (worker 0 has it at step 0)',
    );
  });

  it('refuses a malformed pair built in code, and a half on the wrong worker', () => {
    const bad = [
      [{ kind: 'OVERLAP_F_B', forward: parseAction('0B0'), backward: parseAction('0F1') }],
    ] as Slot[][];
    expect(scheduleError(() => validateSchedule(bad)).message).toContain(
      'worker 0, step 0: OVERLAP_F_B pairs a forward F with a backward B or I, found 0B0 and 0F1',
    );
    const err = scheduleError(() =>
      validateSchedule(grid('0F0 0F1 0B0 0B1|1F0 (1F1;0B1)OVERLAP_F_B 1B0 1B1')),
    );
    expect(err.context.rule).toBe('placement');
    expect(err.message).toContain('stage 0 runs on worker 0 and on worker 1 (0B1 at step 1)');
  });

  it('the dry run starts a pair when both halves can, and charges both', () => {
    // Worker 0's pair waits for 1B0 (ends at 4) although its forward half could start at 2: it runs
    // from 4 to 7, so 1F2 runs 7-8, 1B2 8-10 and 0B2 10-12.
    const stats = bubbleStats(grid('0F0 0F1 (0F2;0B0)OVERLAP_F_B 0B1 0B2|1F0 1B0 1F1 1B1 1F2 1B2'), {
      costF: 1,
      costB: 2,
    });
    expect(stats.busy).toEqual([9, 9]);
    expect(stats.makespan).toBe(12);
  });

  it('insertCommunication receives for both halves before a pair and sends for both after it', () => {
    const lowered = insertCommunication(DUAL_PIPE_V2x4());
    const row = lowered[0]!.map(formatSlot).join(' ');
    expect(row).toContain(
      '(0F3;3B1)OVERLAP_F_B 0SEND_F3 3SEND_B1 3RECV_F2 0RECV_B0 (3F2;0B0)OVERLAP_F_B 3B2',
    );
    validateSchedule(lowered, { stagePlacement: 'v' });
  });
});

describe('validateSchedule catches', () => {
  it('a missing receive, naming the send and the peer', () => {
    const lowered = insertCommunication(generateSchedule('1f1b', { workers: 3, microbatches: 4 }));
    const broken = lowered.map((list) => [...list]);
    broken[1]!.splice(indexOf(broken[1]!, '1RECV_F2'), 1);
    const err = scheduleError(() => validateSchedule(broken));
    expect(err.context.rule).toBe('matching receive');
    expect(err.message).toContain('0SEND_F2 on worker 0 has no matching 1RECV_F2 on worker 1');
    expect(err.message).toContain('>0SEND_F2<');
  });

  it('a receive without its send', () => {
    const lowered = insertCommunication(scheduleGPipe({ workers: 2, microbatches: 2 }));
    const broken = lowered.map((list) => [...list]);
    broken[1]!.splice(indexOf(broken[1]!, '1SEND_B1'), 1);
    expect(scheduleError(() => validateSchedule(broken)).message).toContain(
      '0RECV_B1 on worker 0 has no matching 1SEND_B1 on worker 1',
    );
  });

  it('B before F', () => {
    const err = scheduleError(() => validateSchedule(grid('0F0 0F1 0B0 0B1|1B0 1F0 1F1 1B1')));
    expect(err.context).toMatchObject({ rule: 'F before B', worker: 1, step: 0 });
    expect(err.message).toContain('1B0 (worker 1, step 0) runs before 1F0 (step 1), which it needs');
    expect(err.message).toContain('worker 1 >1B0< >1F0<  1F1   1B1');
  });

  it('W before I', () => {
    const zb = scheduleZBH1({ workers: 2, microbatches: 2 });
    const broken = swap(zb, 0, indexOf(zb[0]!, '0I0'), indexOf(zb[0]!, '0W0'));
    const err = scheduleError(() => validateSchedule(broken));
    expect(err.context.rule).toBe('I before W');
    expect(err.message).toContain('0W0 (worker 0, step');
    expect(err.message).toContain('>0W0<');
  });

  it('a swapped send/receive pair that deadlocks, showing every stuck worker on the grid', () => {
    const lowered = insertCommunication(scheduleGPipe({ workers: 2, microbatches: 2 }));
    // Worker 0 now waits for the gradient of microbatch 0 before sending microbatch 1 forward, and
    // worker 1 needs microbatch 1 forward before it can send that gradient.
    const broken = swap(lowered, 0, indexOf(lowered[0]!, '0SEND_F1'), indexOf(lowered[0]!, '0RECV_B0'));
    const err = scheduleError(() => validateSchedule(broken));
    expect(err.context.rule).toBe('no deadlock');
    expect(err.message).toContain(
      'worker 0 waits at step 3 (0RECV_B0) for 1SEND_B0 (worker 1 has it at step 5)',
    );
    expect(err.message).toContain(
      'worker 1 waits at step 2 (1RECV_F1) for 0SEND_F1 (worker 0 has it at step 4)',
    );
    expect(err.message).toContain(
      [
        'step      0          1          2          3          4          5          6          7',
        'worker 0  0F0        0SEND_F0   0F1       >0RECV_B0<  0SEND_F1   0B0        0RECV_B1   0B1',
        'worker 1  1RECV_F0   1F0       >1RECV_F1<  1F1        1B0        1SEND_B0   1B1        1SEND_B1',
      ].join('\n'),
    );
  });

  it('a swapped compute pair that deadlocks without explicit communication', () => {
    const gpipe = grid('0F0 0F1 0B0 0B1|1F0 1F1 1B0 1B1');
    const err = scheduleError(() => validateSchedule(swap(gpipe, 0, 1, 2)));
    expect(err.context.rule).toBe('no deadlock');
    expect(err.message).toContain('worker 0 waits at step 1 (0B0) for 1B0/1I0 (worker 1 has it at step 2)');
    expect(err.message).toContain('worker 1 waits at step 1 (1F1) for 0F1 (worker 0 has it at step 2)');
  });

  it('a duplicated action, marking both copies', () => {
    const err = scheduleError(() => validateSchedule(grid('0F0 0F1 0B0 0B1|1F0 1B0 1F0 1F1 1B1')));
    expect(err.context.rule).toBe('exactly once');
    expect(err.message).toContain('1F0 appears twice on worker 1, at steps 0 and 2');
    expect(err.message).toContain('worker 1 >1F0<  1B0  >1F0<  1F1   1B1');
  });

  it('missing actions, including stages the schedule never mentions', () => {
    expect(scheduleError(() => validateSchedule(grid('0F0 0F1 0B0|1F0 1B0 1F1 1B1'))).message).toContain(
      'the backward of stage 0, microbatch 1 is missing (0B1, or 0I1 and 0W1)',
    );
    expect(scheduleError(() => validateSchedule(grid('0F0 0I0'))).message).toContain(
      '0W0 is missing: 0I0 has no weight-gradient half',
    );
    expect(scheduleError(() => validateSchedule(grid('0F0 0B0 0W0'))).message).toContain(
      '0B0 and 0W0 both present: a backward is B, or I and W',
    );
    const problems = findScheduleProblems(grid('0F0 0B0'), { stages: 2 });
    expect(problems.map((p) => p.message)).toContain(
      '1F0 is missing: every stage runs every microbatch forward',
    );
  });

  it('a stage on two workers', () => {
    const err = scheduleError(() => validateSchedule(grid('0F0 1F0 1B0 0B0|1F1 1B1')));
    expect(err.context.rule).toBe('placement');
    expect(err.message).toContain('stage 1 runs on worker 0 and on worker 1 (1F1 at step 0)');
  });

  it('communication where nothing crosses a port', () => {
    const err = scheduleError(() => validateSchedule(grid('0F0 0SEND_F0 1F0 1B0 0B0')));
    expect(err.context.rule).toBe('needless communication');
    expect(err.message).toContain('stages 0 and 1 are both on worker 0');
    expect(scheduleError(() => validateSchedule(grid('0RECV_F0 0F0 0B0'))).message).toContain(
      'stage 0 has no stage -1 to talk to',
    );
  });

  it('a send before its compute, and a receive after its consumer', () => {
    const lowered = insertCommunication(scheduleGPipe({ workers: 2, microbatches: 1 }));
    expect(scheduleError(() => validateSchedule(swap(lowered, 0, 0, 1))).context.rule).toBe(
      'send after compute',
    );
    expect(scheduleError(() => validateSchedule(swap(lowered, 1, 0, 1))).context.rule).toBe(
      'receive before compute',
    );
  });

  it('malformed actions and indices outside the given sizes', () => {
    const bad = [[{ kind: 'X', stage: 0, microbatch: 0 } as unknown as Action]];
    expect(scheduleError(() => validateSchedule(bad)).message).toContain(
      'worker 0, step 0: unknown kind "X" (expected F, B, I, W, SEND_F, RECV_F, SEND_B, RECV_B)',
    );
    expect(
      scheduleError(() => validateSchedule(grid('0F0 0B0 0F1 0B1'), { microbatches: 1 })).message,
    ).toContain('action 0F1 on worker 0, step 2: microbatch 1 is out of range 0..0 (microbatches = 1)');
  });

  it('an empty schedule: no rows, or rows without a compute action', () => {
    const none = scheduleError(() => validateSchedule([]));
    expect(none.context.rule).toBe('not empty');
    expect(none.message).toContain('the schedule has no rows, so a step would compute nothing');
    for (const idle of [[[], []], [[null, null]]] as Slot[][][])
      expect(scheduleError(() => validateSchedule(idle)).message).toContain(
        `none of its ${idle.length} row(s) has a compute action (F, B, I or W)`,
      );
    // With the sizes given it was "0F0 is missing"; the schedule is empty.
    expect(scheduleError(() => validateSchedule([[], []], { stages: 2, microbatches: 2 })).context.rule).toBe(
      'not empty',
    );
  });

  it('a stray microbatch or stage with inferred sizes is named, not reported as the ones in between missing', () => {
    const schedule = generateSchedule('1f1b', { workers: 2, microbatches: 4 });
    const strayMicrobatch = [schedule[0]!, [...schedule[1]!, parseAction('1F7')]];
    const step = strayMicrobatch[1]!.length - 1;
    const err = scheduleError(() => validateSchedule(strayMicrobatch));
    expect(err.context).toMatchObject({ rule: 'action', worker: 1, step });
    expect(err.message).toContain(
      `action 1F7 on worker 1, step ${step}: microbatch 7 is out of range 0..3 ` +
        '(inferred from the actions, and no action has microbatch 4)',
    );
    expect(err.message).toContain('>1F7<');
    // The range comes from the configuration when it is known.
    expect(scheduleError(() => validateSchedule(strayMicrobatch, { microbatches: 4 })).message).toContain(
      `action 1F7 on worker 1, step ${step}: microbatch 7 is out of range 0..3 (microbatches = 4)`,
    );
    const strayStage = [[parseAction('5F0'), ...schedule[0]!], schedule[1]!];
    expect(scheduleError(() => validateSchedule(strayStage)).message).toContain(
      'action 5F0 on worker 0, step 0: stage 5 is out of range 0..1 (inferred from the actions, and no action has stage 2)',
    );
  });

  it('large schedules: the grid shows a window around the failing step', () => {
    const schedule = generateSchedule('1f1b', { workers: 4, microbatches: 32 });
    const broken = schedule.map((list) => [...list]);
    broken[2]!.splice(indexOf(broken[2]!, '2B20'), 1);
    const err = scheduleError(() => validateSchedule(broken));
    expect(err.message).toContain(
      'the backward of stage 2, microbatch 20 is missing (2B20, or 2I20 and 2W20)',
    );
    expect(err.message).toContain('>2F20<');
    const lines = err.message.split('\n');
    const header = lines.find((l) => l.startsWith('step'))!;
    expect(header.length).toBeLessThan(200);
    expect(header).toContain('...');
  });
});
