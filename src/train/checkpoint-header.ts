import type { DataCursor } from '../data/dataset.ts';
import { CheckpointCorruptError, CheckpointError, fmtFound } from '../errors.ts';
import { isRngState, type RngState } from '../tensor/rng.ts';
import { sizeOf } from '../tensor/shape.ts';
import { bytesPerElement, DTYPES, type DType } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';
import type { History } from './trainer.ts';

// Note [checkpoint header fields]
// A header's checksum proves only that it was written that way, not that backflow wrote it: a file
// edited by hand, its checksums computed anew, is a valid file. So every field of the header is
// checked for its type and range when it is read, before anything uses it (an optimizer step of -7.5
// would come out as a NonFiniteError some steps later, a history that is not a list as a TypeError
// in the Trainer), and a bad one is a CheckpointCorruptError naming the field, what it should hold and
// what it holds. A field the checks do not know is refused too: a new field comes with a new format
// version. Saving runs the same checks, so a file that is written can be read back.

/** One tensor of the file, in the header. */
export interface TensorEntry {
  kind: 'param' | 'optim';
  name: string;
  /** For optimizer state: the state's key (the parameter is `name`). */
  key?: string;
  dtype: DType;
  shape: number[];
  offset: number;
  bytes: number;
  crc: number;
}

export interface Header {
  step: number;
  optimizer: { name: string; step: number } | null;
  rng: Record<string, RngState>;
  cursor: DataCursor | null;
  meta: Record<string, unknown>;
  tensors: TensorEntry[];
}

/** A field that does not hold what it should: where it is, what it should hold, what it holds. */
export interface FieldProblem {
  field: string;
  expected: string;
  found: unknown;
}

const COUNT = 'an integer in [0, 2^53)';

/** Reads fields, each checked; the first that is wrong goes to `fail`, which throws. */
export class Fields {
  constructor(readonly fail: (problem: FieldProblem) => never) {}

  bad(field: string, expected: string, found: unknown): never {
    return this.fail({ field, expected, found });
  }

  /** A plain object (JSON's) with exactly `keys`; without `keys`, any keys. */
  record(v: unknown, field: string, keys?: readonly string[]): Record<string, unknown> {
    const expected = keys === undefined ? 'an object' : `{${keys.join(', ')}}`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.bad(field, expected, v);
    const r = v as Record<string, unknown>;
    if (keys !== undefined) {
      const missing = keys.find((k) => !Object.hasOwn(r, k));
      if (missing !== undefined) this.bad(field, `${expected} (no ${missing})`, v);
      const unknown = Object.keys(r).find((k) => !keys.includes(k));
      if (unknown !== undefined) this.bad(field, `${expected} (not ${unknown})`, v);
    }
    return r;
  }

  list(v: unknown, field: string): unknown[] {
    return Array.isArray(v) ? v : this.bad(field, 'a list', v);
  }

  /** An integer in [0, max]: a count, a step, a size. */
  count(v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
    if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > max)
      this.bad(field, max === Number.MAX_SAFE_INTEGER ? COUNT : `an integer in [0, ${max}]`, v);
    return v as number;
  }

  /** A number, or null where JSON wrote NaN or an infinity. */
  numberOrNull(v: unknown, field: string): number | null {
    if (v !== null && typeof v !== 'number') this.bad(field, 'a number (or null for NaN)', v);
    return v as number | null;
  }

  string(v: unknown, field: string): string {
    return typeof v === 'string' ? v : this.bad(field, 'a string', v);
  }

  rng(v: unknown, field: string): RngState {
    return isRngState(v) ? v : this.bad(field, 'four 32-bit unsigned integers', v);
  }
}

/** Fields of the header of the file at `path`, each problem a CheckpointCorruptError. */
export function headerFields(path: string): Fields {
  return new Fields(({ field, expected, found }) => {
    throw new CheckpointCorruptError(
      `checkpoint ${path} has a malformed header: ${field}: expected ${expected}, found ${fmtFound(found)}`,
      { path, part: 'header', field, expected, found },
    );
  });
}

/** Fields of a checkpoint being saved, each problem a CheckpointError. */
export function savedFields(): Fields {
  return new Fields(({ field, expected, found }) => {
    throw new CheckpointError(`saveCheckpoint: ${field}: expected ${expected}, found ${fmtFound(found)}`, {
      field,
      expected,
      found,
    });
  });
}

const HEADER_KEYS = ['step', 'optimizer', 'rng', 'cursor', 'meta', 'tensors'];
const CURSOR_KEYS = ['epoch', 'position', 'rng', 'size'];

/** Every field of a header (Note [checkpoint header fields]), its tensors covering `dataBytes`. */
export function checkHeader(h: unknown, f: Fields, dataBytes: number): Header {
  const r = f.record(h, 'header', HEADER_KEYS);
  f.count(r['step'], 'step');
  if (r['optimizer'] !== null) {
    const o = f.record(r['optimizer'], 'optimizer', ['name', 'step']);
    f.string(o['name'], 'optimizer.name');
    f.count(o['step'], 'optimizer.step');
  }
  for (const [name, state] of Object.entries(f.record(r['rng'], 'rng'))) f.rng(state, `rng.${name}`);
  if (r['cursor'] !== null) {
    const c = f.record(r['cursor'], 'cursor', CURSOR_KEYS);
    f.count(c['epoch'], 'cursor.epoch');
    f.count(c['position'], 'cursor.position', f.count(c['size'], 'cursor.size'));
    f.rng(c['rng'], 'cursor.rng');
  }
  f.record(r['meta'], 'meta');
  checkTensors(f.list(r['tensors'], 'tensors'), f, r['optimizer'] !== null, dataBytes);
  return r as unknown as Header;
}

/** Each entry well formed, named once, back to back from offset 0, together `dataBytes` long. */
function checkTensors(tensors: unknown[], f: Fields, optimizer: boolean, dataBytes: number): void {
  const params = new Set<string>();
  const states = dict<Set<string>>();
  let offset = 0;
  tensors.forEach((v, i) => {
    const at = `tensors[${i}]`;
    const kind = (v as Partial<TensorEntry> | null)?.kind;
    const keys = ['kind', 'name', 'dtype', 'shape', 'offset', 'bytes', 'crc'];
    const e = f.record(v, at, kind === 'optim' ? [...keys, 'key'] : keys) as unknown as TensorEntry;
    if (e.kind !== 'param' && e.kind !== 'optim') f.bad(`${at}.kind`, "'param' or 'optim'", e.kind);
    if (e.kind === 'optim' && !optimizer)
      f.bad(`${at}.kind`, "'param' (the header has no optimizer)", e.kind);
    const name = f.string(e.name, `${at}.name`);
    if (e.kind === 'param') {
      if (params.has(name)) f.bad(`${at}.name`, 'a name no other parameter has', name);
      params.add(name);
    } else {
      const key = f.string(e.key, `${at}.key`);
      const keys = (states[name] ??= new Set());
      if (keys.has(key)) f.bad(`${at}.key`, `a key no other state of '${name}' has`, key);
      keys.add(key);
    }
    if (!DTYPES.includes(e.dtype)) f.bad(`${at}.dtype`, `one of ${DTYPES.join(', ')}`, e.dtype);
    const shape = f.list(e.shape, `${at}.shape`);
    if (!shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
      f.bad(`${at}.shape`, `a list of ${COUNT}`, shape);
    if (e.offset !== offset) f.bad(`${at}.offset`, `${offset}, where the tensor before ends`, e.offset);
    const bytes = sizeOf(e.shape) * bytesPerElement(e.dtype);
    if (e.bytes !== bytes) f.bad(`${at}.bytes`, `${bytes}, the bytes of a ${e.dtype}[${e.shape}]`, e.bytes);
    f.count(e.crc, `${at}.crc`, 0xffffffff);
    offset += bytes;
  });
  if (offset !== dataBytes)
    f.bad('tensors', `entries covering the ${dataBytes} bytes after the header`, `${offset} bytes covered`);
}

/**
 * Where a value that should be JSON holds what JSON.stringify throws on (a BigInt, a cycle), or null.
 * Only asked once JSON.stringify has thrown, to say where.
 */
export function unwritable(v: unknown, field: string, path: unknown[] = []): FieldProblem | null {
  if (typeof v === 'bigint') return { field, expected: 'JSON data', found: `a BigInt (${v}n)` };
  if (typeof v !== 'object' || v === null) return null;
  if (path.includes(v))
    return { field, expected: 'JSON data, without cycles', found: 'an object it is inside' };
  path.push(v);
  const parts = Array.isArray(v)
    ? v.map((x, i) => [`${field}[${i}]`, x] as const)
    : Object.entries(v).map(([k, x]) => [`${field}.${k}`, x] as const);
  for (const [at, x] of parts) {
    const problem = unwritable(x, at, path);
    if (problem !== null) return problem;
  }
  path.pop();
  return null;
}

const EPOCH_NUMBERS = ['loss', 'evalLoss', 'evalAccuracy', 'samplesPerSec', 'seconds'] as const;
const STEP_NUMBERS = ['loss', 'lr', 'gradNorm'] as const;

/**
 * The history a checkpoint's meta holds (Note [checkpoint header fields]), or null when it holds none.
 * Its numbers went through JSON, so NaN and the infinities come back as null.
 */
export function checkHistory(v: unknown, f: Fields): History | null {
  if (v === undefined) return null;
  const history = f.record(v, 'meta.history', ['epochs', 'steps']);
  f.list(history['epochs'], 'meta.history.epochs').forEach((e, i) => {
    const at = `meta.history.epochs[${i}]`;
    const r = f.record(e, at, ['epoch', 'steps', ...EPOCH_NUMBERS]);
    f.count(r['epoch'], `${at}.epoch`);
    f.count(r['steps'], `${at}.steps`);
    for (const k of EPOCH_NUMBERS) f.numberOrNull(r[k], `${at}.${k}`);
  });
  f.list(history['steps'], 'meta.history.steps').forEach((s, i) => {
    const at = `meta.history.steps[${i}]`;
    const r = f.record(s, at, ['step', 'epoch', ...STEP_NUMBERS]);
    f.count(r['step'], `${at}.step`);
    f.count(r['epoch'], `${at}.epoch`);
    for (const k of STEP_NUMBERS) f.numberOrNull(r[k], `${at}.${k}`);
  });
  return history as unknown as History;
}
