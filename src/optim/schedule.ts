import { InputError } from '../errors.ts';

/**
 * A learning-rate schedule: a pure function from the number of the update about to be applied
 * (from 1, as `Optimizer.update` counts) to its rate. Being pure, a resumed run needs only the step
 * count to get the same rates. Like PyTorch's schedulers, the first update uses the initial rate.
 */
export type LrSchedule = (step: number) => number;

function check(ok: boolean, what: string, found: unknown): void {
  if (!ok) throw new InputError(`learning-rate schedule: ${what}, found ${String(found)}`, { found });
}

/** The same rate at every step. */
export function constantLr(lr: number): LrSchedule {
  check(Number.isFinite(lr) && lr >= 0, 'lr must be a finite number >= 0', lr);
  return () => lr;
}

/** PyTorch's StepLR: `lr * gamma^floor((step - 1) / stepSize)`. */
export function stepLr(lr: number, stepSize: number, gamma = 0.1): LrSchedule {
  check(Number.isFinite(lr) && lr >= 0, 'lr must be a finite number >= 0', lr);
  check(Number.isInteger(stepSize) && stepSize >= 1, 'stepSize must be an integer >= 1', stepSize);
  check(Number.isFinite(gamma) && gamma >= 0, 'gamma must be a finite number >= 0', gamma);
  return (step) => lr * gamma ** Math.floor((step - 1) / stepSize);
}

/**
 * PyTorch's CosineAnnealingLR without restarts: from `lr` at step 1 down to `minLr` at step
 * `totalSteps + 1`, i.e. `minLr + (lr - minLr) (1 + cos(pi t / totalSteps)) / 2` with t = step - 1,
 * and `minLr` after that.
 */
export function cosineLr(lr: number, totalSteps: number, minLr = 0): LrSchedule {
  check(Number.isFinite(lr) && lr >= 0, 'lr must be a finite number >= 0', lr);
  check(Number.isInteger(totalSteps) && totalSteps >= 1, 'totalSteps must be an integer >= 1', totalSteps);
  check(Number.isFinite(minLr) && minLr >= 0 && minLr <= lr, 'minLr must be in [0, lr]', minLr);
  return (step) => {
    const t = Math.min(Math.max(step - 1, 0), totalSteps);
    return minLr + ((lr - minLr) * (1 + Math.cos((Math.PI * t) / totalSteps))) / 2;
  };
}

/**
 * A linear ramp over the first `warmupSteps` updates up to the first rate of `after`
 * (`after(1) * step / warmupSteps`), then `after` from its own step 1.
 */
export function linearWarmup(warmupSteps: number, after: LrSchedule): LrSchedule {
  check(
    Number.isInteger(warmupSteps) && warmupSteps >= 0,
    'warmupSteps must be an integer >= 0',
    warmupSteps,
  );
  const peak = after(1);
  return (step) => (step <= warmupSteps ? (peak * step) / warmupSteps : after(step - warmupSteps));
}
