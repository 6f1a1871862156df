// Op attributes declared by kind (`OpDef.attrs`), checked in one place before any shape rule runs.
import { fmtFound, OpError } from '../errors.ts';
import { DTYPES } from '../tensor/tensor.ts';
import type { Attrs, OpDef, TypeInfo } from './op.ts';

const isDims = (v: unknown, least: number) =>
  Array.isArray(v) &&
  v.every((d) => (typeof d === 'string' ? d !== '' : Number.isInteger(d) && (d as number) >= least));

const isPair = (v: unknown, least: number) =>
  Array.isArray(v) && v.length === 2 && v.every((d) => Number.isInteger(d) && (d as number) >= least);

/**
 * What an attribute may hold. Only the kind is checked here; what depends on the inputs (an axis
 * against the rank, a permutation, a reshape's element count) is the shape rule's, a ShapeError.
 */
export const ATTR_KINDS = {
  boolean: { expected: 'a boolean', ok: (v: unknown) => typeof v === 'boolean' },
  finite: { expected: 'a finite number', ok: (v: unknown) => typeof v === 'number' && Number.isFinite(v) },
  /** An axis as ops store it, in [0, rank) (the `Ops` methods normalize negative ones). */
  axis: { expected: 'an integer axis', ok: (v: unknown) => Number.isInteger(v) },
  /** A probability that excludes certainty, as a dropout rate is. */
  fraction: {
    expected: 'a number in [0, 1)',
    ok: (v: unknown) => typeof v === 'number' && v >= 0 && v < 1,
  },
  /** A word of a random key (Note [run context] in step-key.ts). */
  uint32: {
    expected: 'an integer in [0, 2^32)',
    ok: (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32,
  },
  count: { expected: 'an integer >= 1', ok: (v: unknown) => Number.isInteger(v) && (v as number) >= 1 },
  integers: {
    expected: 'an array of integers',
    ok: (v: unknown) => Array.isArray(v) && v.every((x) => Number.isInteger(x)),
  },
  /** A window's extent, stride or dilation, or an image's size: along height, then width. */
  pair: { expected: 'two integers >= 1', ok: (v: unknown) => isPair(v, 1) },
  /** Zero padding on both sides of height, then of width. */
  padding: { expected: 'two integers >= 0', ok: (v: unknown) => isPair(v, 0) },
  shape: {
    expected: 'an array of sizes (integers >= 0) and symbols (non-empty strings)',
    ok: (v: unknown) => isDims(v, 0),
  },
  /** A reshape or slice extent: -1 stands for the rest of the axis. */
  extent: {
    expected: 'an array of sizes (integers >= 0, or -1 for the rest) and symbols (non-empty strings)',
    ok: (v: unknown) => isDims(v, -1),
  },
  dtype: { expected: `one of ${DTYPES.join(', ')}`, ok: (v: unknown) => DTYPES.includes(v as never) },
} as const;

export type AttrKind = keyof typeof ATTR_KINDS;

/**
 * Checks a node's attributes against its op's declaration: each declared one present and of its
 * kind, no other. An op that declares none (a user's op, say) is not checked. The error, an OpError,
 * names the op, the attribute, what was expected and what was found.
 */
export function checkAttrs(def: OpDef, attrs: Attrs): void {
  const kinds = def.attrs;
  if (kinds === undefined) return;
  if (typeof attrs !== 'object' || attrs === null)
    failAttr(def, '(all)', 'an object of attributes', attrs, `expected {${Object.keys(kinds).join(', ')}}`);
  // Note: for-in with an own-property test visits the keys Object.keys lists, in its order, without
  // making an array: this runs for every node built and every eager op (a million-node graph's worth).
  for (const attr in kinds) {
    if (!Object.hasOwn(kinds, attr)) continue;
    const { expected, ok } = ATTR_KINDS[kinds[attr]!];
    if (!ok(attrs[attr])) failAttr(def, attr, expected, attrs[attr]);
  }
  for (const attr in attrs) {
    if (!Object.hasOwn(attrs, attr) || Object.hasOwn(kinds, attr)) continue;
    const known = Object.keys(kinds).join(', ');
    const why =
      known === '' ? 'unknown to the op (it has none)' : `unknown to the op (its attributes: ${known})`;
    failAttr(def, attr, known === '' ? 'no attributes' : known, attrs[attr], why);
  }
}

function failAttr(
  def: OpDef,
  attr: string,
  expected: string,
  found: unknown,
  why = `expected ${expected}`,
): never {
  throw new OpError(`${def.name}: attribute ${attr}: ${why}, found ${fmtFound(found)}`, {
    op: def.name,
    attr,
    expected,
    found,
  });
}

/** An op's shape rule on checked attributes: what every engine and checker calls. */
export function inferType(def: OpDef, inputs: readonly TypeInfo[], attrs: Attrs): TypeInfo {
  checkAttrs(def, attrs);
  return def.infer(inputs, attrs);
}
