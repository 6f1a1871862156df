import { type ErrorContext, ProtocolError } from '../errors.ts';

/** Validation with a path for messages: every failure is a ProtocolError naming the edge and the field. */
export class Check {
  constructor(
    readonly edge: string,
    readonly where: string,
    /** Added to every error's context (e.g. the phase of the message being checked). */
    readonly context: ErrorContext = {},
  ) {}

  at(part: string): Check {
    return new Check(this.edge, `${this.where}: ${part}`, this.context);
  }

  /** The same checks, their errors also carrying `context`. */
  with(context: ErrorContext): Check {
    return new Check(this.edge, this.where, { ...this.context, ...context });
  }

  /** Throws; `found` is shown as JSON unless `described` says it is already words. */
  fail(expected: string, found: unknown, described = false): never {
    const shown = described ? String(found) : show(found);
    throw new ProtocolError(`${this.edge}: ${this.where}: expected ${expected}, found ${shown}`, {
      edge: this.edge,
      phase: 'receive',
      ...this.context,
      expected,
      found: shown,
    });
  }

  /** A plain object with exactly these keys (optional ones may be absent). */
  record(v: unknown, keys: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
    const want = `{${[...keys, ...optional.map((k) => `${k}?`)].join(', ')}}`;
    if (!isPlain(v)) this.fail(want, v);
    for (const k of keys) if (!(k in v)) this.fail(`${want} (missing ${k})`, v);
    for (const k of Object.keys(v))
      if (!keys.includes(k) && !optional.includes(k)) this.fail(`${want} (unknown field ${k})`, v);
    return v;
  }

  /** A plain object with any keys. */
  map(v: unknown, what: string): Record<string, unknown> {
    if (!isPlain(v)) this.fail(what, v);
    return v;
  }

  int(v: unknown, name: string, lo: number, hi: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v >= hi)
      this.fail(`${name}: an integer in [${lo}, ${hi})`, v);
    return v;
  }

  oneOf(v: unknown, name: string, values: readonly string[]): string {
    if (typeof v !== 'string' || !values.includes(v)) this.fail(`${name}: one of ${values.join(', ')}`, v);
    return v;
  }
}

export function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function show(v: unknown): string {
  if (typeof v === 'object' && v !== null) {
    const tag = Object.prototype.toString.call(v).slice(8, -1);
    if (tag === 'ArrayBuffer' || tag === 'SharedArrayBuffer')
      return `${tag}(${(v as ArrayBuffer).byteLength})`;
    if (ArrayBuffer.isView(v)) return `${tag}(${v.byteLength} bytes)`;
  }
  let s: string;
  try {
    s =
      // Numbers as themselves: JSON would show NaN and the infinities as null.
      typeof v === 'number' || typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function'
        ? String(v)
        : (JSON.stringify(v) ?? String(v));
  } catch {
    s = Object.prototype.toString.call(v);
  }
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
