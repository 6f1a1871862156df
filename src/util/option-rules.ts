// What an option accepts, once, for every layer that checks options (the runtime's, the optimizer's,
// the trainer's): a rule says it in words for the error and tests the value.
import { type ErrorContext, fmtFound, InputError } from '../errors.ts';

export interface OptionRule {
  /** What the option accepts, as an error message says it: 'an integer >= 1'. */
  readonly expected: string;
  readonly ok: (v: unknown) => boolean;
}

const isNumber = (v: unknown): v is number => typeof v === 'number';

/** setTimeout's longest delay: a longer (or infinite) one fires at once. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export const RULES = {
  integer: { expected: 'an integer', ok: (v) => Number.isInteger(v) },
  count: { expected: 'an integer >= 1', ok: (v) => Number.isInteger(v) && (v as number) >= 1 },
  countOrZero: { expected: 'an integer >= 0', ok: (v) => Number.isInteger(v) && (v as number) >= 0 },
  rate: { expected: 'a finite number >= 0', ok: (v) => isNumber(v) && Number.isFinite(v) && v >= 0 },
  positive: { expected: 'a finite number > 0', ok: (v) => isNumber(v) && Number.isFinite(v) && v > 0 },
  beta: { expected: 'a number in [0, 1)', ok: (v) => isNumber(v) && v >= 0 && v < 1 },
  fraction: { expected: 'a number in [0, 1]', ok: (v) => isNumber(v) && v >= 0 && v <= 1 },
  flag: { expected: 'a boolean', ok: (v) => typeof v === 'boolean' },
  timeoutMs: {
    expected: `a number of milliseconds in (0, ${MAX_TIMEOUT_MS}]`,
    ok: (v) => isNumber(v) && v > 0 && v <= MAX_TIMEOUT_MS,
  },
} as const satisfies Record<string, OptionRule>;

/** A rule for one of a few names. */
export function oneOf(names: readonly string[]): OptionRule {
  return {
    expected: `one of ${names.join(', ')}`,
    ok: (v) => typeof v === 'string' && names.includes(v),
  };
}

/**
 * The value, if the rule takes it; else an InputError `${where}: expected ..., found ...` whose
 * context says what was expected and found (and `context`, e.g. the option's name).
 */
export function checkOption<T>(value: T, rule: OptionRule, where: string, context: ErrorContext = {}): T {
  if (!rule.ok(value)) {
    throw new InputError(`${where}: expected ${rule.expected}, found ${fmtFound(value)}`, {
      ...context,
      expected: rule.expected,
      found: value,
    });
  }
  return value;
}

/** Checks each option present in `options` that `rules` names; `where` names the caller. */
export function checkOptions(
  options: object,
  rules: Readonly<Record<string, OptionRule>>,
  where: string,
): void {
  for (const [option, rule] of Object.entries(rules)) {
    const value = (options as Record<string, unknown>)[option];
    if (value !== undefined) checkOption(value, rule, `${where}: ${option}`, { option });
  }
}
