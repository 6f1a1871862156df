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

/** The error `p` rejects with, checked to be of `Class`. */
export async function rejected<E extends BackflowError>(
  Class: abstract new (...args: never[]) => E,
  p: Promise<unknown>,
): Promise<E> {
  const err = await p.then(
    () => new Error(`expected a ${Class.name}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Class);
  return err as E;
}
