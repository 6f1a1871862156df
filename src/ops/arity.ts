import { OpError } from '../errors.ts';
import type { OpDef } from './op.ts';

export function checkArity(def: OpDef, count: number, where: { node?: string | number } = {}): void {
  const ok = def.arity === 'variadic' ? count >= 1 : count === def.arity;
  if (!ok) {
    const expected = def.arity === 'variadic' ? 'at least 1' : String(def.arity);
    throw new OpError(`${def.name}: expected ${expected} inputs, found ${count}`, {
      op: def.name,
      ...where,
      expected,
      found: count,
    });
  }
}
