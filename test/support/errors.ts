import { expect } from 'vitest';
import type { BackflowError } from '../../src/errors.ts';

/** The error `f` throws, checked to be of `Class`. */
export function thrown<E extends BackflowError>(
  Class: abstract new (...args: never[]) => E,
  f: () => unknown,
): E {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(Class);
    return err as E;
  }
  throw new Error(`expected a ${Class.name}`);
}
