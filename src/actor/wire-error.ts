import type { ErrorReport } from './messages.ts';

/**
 * An error as plain data: name, message, stack, `code`, its own enumerable fields (custom ones
 * included), its `context`, and where it happened. A thrown non-Error becomes a message too.
 */
export function toWireError(err: unknown, where: ErrorReport['context']): ErrorReport {
  if (err instanceof Error) {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(err)) {
      if (k === 'context') continue;
      if (isPlain(v)) fields[k] = v;
    }
    const ctx = (err as { context?: Record<string, unknown> }).context;
    if (ctx !== undefined) {
      for (const [k, v] of Object.entries(ctx)) if (isPlain(v)) fields[`context.${k}`] = v;
    }
    return {
      name: err.name,
      message: err.message,
      ...(err.stack !== undefined ? { stack: err.stack } : {}),
      ...('code' in err ? { code: (err as { code: unknown }).code } : {}),
      fields,
      context: where,
    };
  }
  return {
    name: 'NonError',
    message: `a non-Error value was thrown: ${safeString(err)}`,
    fields: { value: isPlain(err) ? err : safeString(err) },
    context: where,
  };
}

function isPlain(v: unknown): boolean {
  if (v === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof v)) return true;
  if (Array.isArray(v)) return v.every(isPlain);
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)
    return Object.values(v as object).every(isPlain);
  return false;
}

function safeString(v: unknown): string {
  try {
    return typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  } catch {
    return String(v);
  }
}
