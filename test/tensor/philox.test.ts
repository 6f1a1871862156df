// Philox4x32-10 against the known-answer vectors of Random123 (kat_vectors), and the stream's
// blocks against single calls.
import { describe, expect, it } from 'vitest';
import { philox4x32, philoxStream } from '../../src/tensor/philox.ts';

const hex = (words: Uint32Array) => Array.from(words, (w) => w.toString(16).padStart(8, '0')).join(' ');

describe('philox4x32', () => {
  it.each([
    [[0, 0, 0, 0], [0, 0], '6627e8d5 e169c58d bc57ac4c 9b00dbd8'],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0xffffffff, 0xffffffff],
      '408f276d 41c83b0e a20bc7c6 6d5451fd',
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
      [0xa4093822, 0x299f31d0],
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    ],
  ])('counter %j, key %j: %s', (counter, key, expected) => {
    const out = new Uint32Array(4);
    const [c0, c1, c2, c3] = counter as [number, number, number, number];
    const [k0, k1] = key as [number, number];
    philox4x32(c0, c1, c2, c3, k0, k1, out);
    expect(hex(out)).toBe(expected);
  });

  it('a stream is the blocks at counters 0, 1, 2 ... cut to its length', () => {
    const words = philoxStream(10, 5, 6, 7, 8, 9);
    expect(words.length).toBe(10);
    const block = new Uint32Array(4);
    for (let b = 0; b < 3; b++) {
      philox4x32(b, 5, 6, 7, 8, 9, block);
      expect(Array.from(words.subarray(b * 4, b * 4 + 4))).toEqual(Array.from(block).slice(0, 10 - b * 4));
    }
  });
});
