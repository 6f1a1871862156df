// Byte sizes as people write and read them: 4096, 256KiB, 2GiB.

const UNITS: Record<string, number> = { '': 1, B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

/** A whole number of bytes >= 1 from `4096`, `256KiB`, `1.5 GiB`; null when the text is not one. */
export function parseBytes(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim());
  if (match === null || !Object.hasOwn(UNITS, match[2]!)) return null;
  const n = Number(match[1]) * UNITS[match[2]!]!;
  return Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** `512 B`, `1.5 KiB`, `12.0 MiB`, `1.72 GiB`. */
export function formatBytes(n: number): string {
  if (n < 2 ** 10) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}
