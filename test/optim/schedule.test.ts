import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { constantLr, cosineLr, linearWarmup, stepLr } from '../../src/optim/schedule.ts';

const at = (f: (s: number) => number, steps: number[]) => steps.map(f);

describe('learning-rate schedules', () => {
  it('constantLr', () => {
    expect(at(constantLr(0.1), [1, 2, 1000])).toEqual([0.1, 0.1, 0.1]);
  });

  it("stepLr follows PyTorch's StepLR example: 0.05 for epochs 0-29, 0.005 for 30-59, 0.0005 after", () => {
    const f = stepLr(0.05, 30, 0.1);
    // step t is the t-th update, PyTorch's epoch t - 1.
    expect(f(1)).toBe(0.05);
    expect(f(30)).toBe(0.05);
    expect(f(31)).toBeCloseTo(0.005, 15);
    expect(f(60)).toBeCloseTo(0.005, 15);
    expect(f(61)).toBeCloseTo(0.0005, 15);
  });

  it('cosineLr: lr at step 1, the midpoint halfway, minLr at totalSteps + 1 and after', () => {
    const f = cosineLr(1, 100, 0.1);
    expect(f(1)).toBe(1);
    expect(f(51)).toBeCloseTo(0.55, 15);
    expect(f(26)).toBeCloseTo(0.1 + (0.9 * (1 + Math.SQRT1_2)) / 2, 15);
    expect(f(101)).toBeCloseTo(0.1, 15);
    expect(f(500)).toBeCloseTo(0.1, 15);
    for (let t = 1; t < 101; t++) expect(f(t + 1)).toBeLessThanOrEqual(f(t));
  });

  it('linearWarmup ramps to the next schedule, which then starts at its own step 1', () => {
    const f = linearWarmup(4, stepLr(1, 2, 0.5));
    expect(at(f, [1, 2, 3, 4, 5, 6, 7, 8])).toEqual([0.25, 0.5, 0.75, 1, 1, 1, 0.5, 0.5]);
    expect(linearWarmup(0, constantLr(0.3))(1)).toBe(0.3);
  });

  it('rejects bad arguments', () => {
    expect(() => stepLr(0.1, 0)).toThrow(InputError);
    expect(() => cosineLr(0.1, 10, 0.2)).toThrow(/minLr must be in \[0, lr\]/);
    expect(() => constantLr(Number.NaN)).toThrow(InputError);
    expect(() => linearWarmup(-1, constantLr(1))).toThrow(InputError);
  });
});
