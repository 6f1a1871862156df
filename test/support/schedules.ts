import { ScheduleError } from '../../src/errors.ts';
import { parseSlot, type Slot } from '../../src/schedule/action.ts';
import type { ScheduleKind } from '../../src/schedule/config.ts';
import { thrown } from './errors.ts';

/** The ScheduleError `f` throws. */
export const scheduleError = (f: () => unknown): ScheduleError => thrown(ScheduleError, f);

/** A schedule from rows of action texts, `.` for idle: `'0F0 0B0|. 1F0 1B0'` (pairs as `(0F1;0B0)OVERLAP_F_B`). */
export const grid = (text: string): Slot[][] =>
  text.split('|').map((row) =>
    row
      .trim()
      .split(/\s+/)
      .map((cell) => (cell === '.' ? null : parseSlot(cell))),
  );

/**
 * Hand-written V schedules of 2 workers and 4 stages (stages 0 and 3 on worker 0, 1 and 2 on worker 1:
 * stagePlacement 'v'), in a 1F1B-like order: forwards run ahead, then backwards take over as soon as
 * they can.
 */
export const V2x4 = (microbatches: 2 | 4): Slot[][] =>
  microbatches === 2
    ? grid('0F0 0F1 . 3F0 3B0 3F1 3B1 0B0 . 0B1|. 1F0 2F0 1F1 2F1 2B0 1B0 2B1 1B1')
    : grid(
        '0F0 0F1 0F2 3F0 3B0 3F1 3B1 0B0 0F3 0B1 . 3F2 3B2 3F3 3B3 0B2 . 0B3|' +
          '. 1F0 2F0 1F1 2F1 2B0 1B0 2B1 1B1 1F2 2F2 1F3 2F3 2B2 1B2 2B3 1B3',
      );

/**
 * DualPipeV's order for 2 workers and 4 microbatches (stages 0 and 3 on worker 0, 1 and 2 on worker 1),
 * written out by hand from PyTorch's ScheduleDualPipeV: a V schedule with overlapped pairs.
 */
export const DUAL_PIPE_V2x4 = (): Slot[][] =>
  grid(
    '0F0 0F1 0F2 3F0 3I0 3W0 3F1 (0F3;3B1)OVERLAP_F_B (3F2;0B0)OVERLAP_F_B 3B2 (3F3;0B1)OVERLAP_F_B 3B3 ' +
      '0I2 0W2 0I3 0W3|' +
      '1F0 2F0 1F1 2F1 1F2 2B0 (2F2;1B0)OVERLAP_F_B (1F3;2B1)OVERLAP_F_B (2F3;1B1)OVERLAP_F_B 2B2 1B2 ' +
      '2I3 1I3 2W3 1W3',
  );

/** The model chunks per worker tests run `kind` with: 2 where it takes several (2 is all a V takes), else 1. */
export const chunksFor = (kind: ScheduleKind): number =>
  kind === 'gpipe' || kind === '1f1b' || kind === 'zb-h1' ? 1 : 2;
