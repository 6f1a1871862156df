// Note [names as keys]
// Parameter, input, output and optimizer-state names come from users and from files, and any string
// is a name: `__proto__`, `constructor` and `toString` too. A plain object answers those from
// Object.prototype: `o['constructor']` is the function Object, `o['__proto__'] = v` swaps o's
// prototype instead of adding a key, and `(o[name] ??= {})[key] = v` writes onto whatever o inherits
// (Object.prototype itself, for `__proto__`). So a record keyed by names that backflow builds is a
// `dict()`, with no prototype, where every key is its own; a record a caller or a decoder hands in is
// read with `own(record, name)`. `Object.entries` and `Object.fromEntries` are safe as they are
// (own keys only; fromEntries defines). Where no caller sees the collection, a Map does the same.

/** An empty record without a prototype: every key, `__proto__` included, is an own key. */
export function dict<V>(): Record<string, V> {
  return Object.create(null) as Record<string, V>;
}

/** `record[key]` when `key` is the record's own, else undefined (never what Object.prototype holds). */
export function own<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
