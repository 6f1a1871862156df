import { InputError } from '../errors.ts';
import { checkOption, checkOptions, type OptionRule, RULES } from '../util/option-rules.ts';
import type { FitOptions } from './trainer.ts';

/** What the options of `fit` accept: those it cannot do without, then the others. */
const REQUIRED = {
  // NaN would train no epoch at all, and say nothing.
  epochs: { expected: 'an integer >= 1, or Infinity', ok: (v) => v === Infinity || RULES.count.ok(v) },
  batchSize: RULES.count,
} satisfies { readonly [K in keyof FitOptions]?: OptionRule };
const OPTIONAL = {
  seed: RULES.integer,
  // 0 would never save (step % 0 is NaN).
  checkpointEvery: RULES.count,
  maxSteps: RULES.countOrZero,
} satisfies { readonly [K in keyof FitOptions]?: OptionRule };

/** Checks the options of `fit` before any worker starts, naming the option, the value and what is allowed. */
export function checkFitOptions(options: FitOptions): void {
  for (const [option, rule] of Object.entries(REQUIRED))
    checkOption(options[option as keyof typeof REQUIRED], rule, `fit: ${option}`, { option });
  checkOptions(options, OPTIONAL, 'fit');
  const stop = options.earlyStop;
  if (stop === undefined) return;
  checkOptions(stop, { patience: RULES.count }, 'fit: earlyStop');
  if (stop.monitor !== undefined && stop.monitor !== 'loss' && options.evalData === undefined) {
    throw new InputError(`fit: earlyStop monitors ${stop.monitor}, which needs evalData`, {
      option: 'earlyStop.monitor',
      expected: "'loss', or evalData",
      found: stop.monitor,
    });
  }
}
