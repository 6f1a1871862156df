import { OpError } from '../errors.ts';
import type { Attrs, OpDef } from './op.ts';

const registry = new Map<string, OpDef>();

/** Names the graph IR reserves for its leaves: no op may take them. */
export const LEAF_OPS = ['input', 'param', 'const'] as const;

/**
 * Registers an op: the way built-in ops and users' own ops enter the registry. A name can be
 * registered once; a second registration throws.
 */
export function defineOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  if (typeof def.name !== 'string' || def.name === '') {
    throw new OpError(`defineOp: expected a non-empty op name, found ${JSON.stringify(def.name)}`);
  }
  if ((LEAF_OPS as readonly string[]).includes(def.name)) {
    throw new OpError(`defineOp: '${def.name}' is reserved for graph leaves`, { op: def.name });
  }
  if (registry.has(def.name)) {
    throw new OpError(`defineOp: an op named '${def.name}' is already registered`, { op: def.name });
  }
  registry.set(def.name, def as unknown as OpDef);
  return def;
}

/** Whether an op of this name is registered in this thread. */
export function hasOp(name: string): boolean {
  return registry.has(name);
}

/** The definition of a registered op; an OpError listing the registered names if there is none. */
export function getOp(name: string): OpDef {
  const def = registry.get(name);
  if (def === undefined) {
    throw new OpError(`unknown op '${name}' (registered: ${[...registry.keys()].sort().join(', ')})`, {
      op: name,
      expected: 'a registered op',
      found: name,
    });
  }
  return def;
}

/** The names of the ops registered in this thread, sorted: the built-in ones, and those `defineOp` added. */
export function listOps(): string[] {
  return [...registry.keys()].sort();
}
