// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator. Its output is a pure function of a 128-bit counter and a 64-bit key, with
// no state between draws, so a draw depends on what it is for, never on who draws it or in which
// order: what Note [run context] (src/ops/step-key.ts) needs.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** The high 32 bits of the 64-bit product of two 32-bit unsigned integers (each partial product is exact in a double). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + Math.floor(lh / 0x10000) + Math.floor(hl / 0x10000) + Math.floor(mid / 0x10000)) >>> 0;
}

/**
 * Philox4x32 with 10 rounds: four 32-bit words of output for counter (c0, c1, c2, c3) and key
 * (k0, k1), written to `out`. Matches the known-answer vectors of Random123.
 */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): void {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  let key0 = k0 >>> 0;
  let key1 = k1 >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      key0 = (key0 + W0) >>> 0;
      key1 = (key1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, x0);
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhi(M1, x2);
    const lo1 = Math.imul(M1, x2) >>> 0;
    x0 = (hi1 ^ x1 ^ key0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ key1) >>> 0;
    x3 = lo0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

/**
 * `count` uniform 32-bit words: word i is word (i mod 4) of Philox at counter (i / 4, c1, c2, c3)
 * and key (k0, k1). Any slice of the stream is computed without the rest.
 */
export function philoxStream(
  count: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): Uint32Array {
  const words = new Uint32Array(Math.ceil(count / 4) * 4);
  const block = new Uint32Array(4);
  for (let b = 0; b * 4 < count; b++) {
    philox4x32(b, c1, c2, c3, k0, k1, block);
    words.set(block, b * 4);
  }
  return words.subarray(0, count);
}
