// Header fields that pass their checksum but not their type or range: refused on load with the field,
// what it should hold and what it holds; and what cannot be written as such a header, refused on save.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointCorruptError, CheckpointError } from '../../src/errors.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import {
  CHECKPOINT_FILE,
  type Checkpoint,
  loadCheckpoint,
  saveCheckpoint,
} from '../../src/train/checkpoint.ts';
import { run } from '../fixtures/train-run.ts';
import { headerOf, reforge } from './fixtures/forge-checkpoint.ts';

const dirs: string[] = [];
let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backflow-header-'));
  dirs.push(dir);
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const file = () => join(dir, CHECKPOINT_FILE);
const t = (v: number) => new Tensor('float64', [2], new Float64Array([v, v + 1]));

function genuine(): Checkpoint {
  return {
    step: 3,
    params: { a: t(1), b: t(2) },
    optimizer: { name: 'adam', step: 3, states: { a: { m: t(3), v: t(4) } } },
    rng: { data: [1, 2, 3, 4] },
    cursor: { epoch: 1, position: 8, rng: [5, 6, 7, 8], size: 16 },
    meta: { model: 'mlp' },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: a header being forged holds whatever the test puts in it
type Header = Record<string, any>;
type Entry = { kind: string; name: string; key?: string };

/** Saves the genuine checkpoint, then rewrites its header with `edit` (checksums made anew). */
async function forge(edit: (h: Header) => unknown): Promise<void> {
  await saveCheckpoint(dir, genuine());
  await writeFile(file(), reforge(await readFile(file()), edit));
}

async function loadError(): Promise<CheckpointError> {
  const error = await loadCheckpoint(dir).then(
    () => new Error('loadCheckpoint succeeded'),
    (e: Error) => e,
  );
  expect(error, error.stack).toBeInstanceOf(CheckpointCorruptError);
  return error as CheckpointError;
}

describe('a header field of the wrong type or range is a CheckpointCorruptError naming it', () => {
  // [what, the edit, the field named, what it found]
  const cases: [string, (h: Header) => unknown, string, unknown][] = [
    ['a negative fractional step', (h) => void (h['step'] = -7.5), 'step', -7.5],
    ['a step past 2^53', (h) => void (h['step'] = 1e300), 'step', 1e300],
    ['a step as a string', (h) => void (h['step'] = '3'), 'step', '3'],
    ['optimizer.step -7.5', (h) => void (h['optimizer'].step = -7.5), 'optimizer.step', -7.5],
    ['optimizer.step 1e300', (h) => void (h['optimizer'].step = 1e300), 'optimizer.step', 1e300],
    [
      'optimizer.step Infinity (1e999 in the JSON)',
      (h) => JSON.stringify(h).replace('"step":3}', '"step":1e999}'),
      'optimizer.step',
      Number.POSITIVE_INFINITY,
    ],
    ['optimizer.name a number', (h) => void (h['optimizer'].name = 5), 'optimizer.name', 5],
    ['optimizer an array', (h) => void (h['optimizer'] = []), 'optimizer', []],
    [
      'an unknown optimizer field',
      (h) => void (h['optimizer'].lr = 1),
      'optimizer',
      { name: 'adam', step: 3, lr: 1 },
    ],
    ['rng an array', (h) => void (h['rng'] = [1, 2, 3, 4]), 'rng', [1, 2, 3, 4]],
    ['rng null', (h) => void (h['rng'] = null), 'rng', null],
    ['an rng state of three words', (h) => void (h['rng'].data = [1, 2, 3]), 'rng.data', [1, 2, 3]],
    ['cursor a string', (h) => void (h['cursor'] = 'start'), 'cursor', 'start'],
    ['cursor.epoch -1', (h) => void (h['cursor'].epoch = -1), 'cursor.epoch', -1],
    ['cursor.position past size', (h) => void (h['cursor'].position = 17), 'cursor.position', 17],
    ['cursor.size 0.5', (h) => void (h['cursor'].size = 0.5), 'cursor.size', 0.5],
    ['cursor without rng', (h) => void delete h['cursor'].rng, 'cursor', { epoch: 1, position: 8, size: 16 }],
    ['meta an array', (h) => void (h['meta'] = [1]), 'meta', [1]],
    ['meta null', (h) => void (h['meta'] = null), 'meta', null],
    ['no meta', (h) => void delete h['meta'], 'header', undefined],
    ['an unknown header field', (h) => void (h['extra'] = 1), 'header', undefined],
    ['a tensor name that is not a string', (h) => void (h['tensors'][0].name = 7), 'tensors[0].name', 7],
    ['a crc past 32 bits', (h) => void (h['tensors'][0].crc = 2 ** 32), 'tensors[0].crc', 2 ** 32],
    [
      'a shape of 1e300 by 0',
      (h) => void (h['tensors'][0].shape = [1e300, 0]),
      'tensors[0].shape',
      [1e300, 0],
    ],
  ];
  it.each(cases)('%s', async (_, edit, field, found) => {
    await forge(edit);
    const error = await loadError();
    expect(error.message).toContain(`checkpoint ${file()} has a malformed header: ${field}: expected `);
    expect(error.context).toMatchObject({ path: file(), part: 'header', field });
    expect(typeof error.context['expected']).toBe('string');
    if (found !== undefined) expect(error.context['found']).toEqual(found);
  });

  it('two parameters of one name, or two states of one key, are refused', async () => {
    await forge((h) => void ((h['tensors'] as Entry[])[1]!.name = 'a'));
    expect((await loadError()).message).toContain(
      `tensors[1].name: expected a name no other parameter has, found "a"`,
    );
    await forge((h) => void ((h['tensors'] as Entry[])[3]!.key = 'm'));
    expect((await loadError()).message).toContain(
      `tensors[3].key: expected a key no other state of 'a' has, found "m"`,
    );
  });

  it('optimizer state without an optimizer is refused, not dropped', async () => {
    await forge((h) => void (h['optimizer'] = null));
    expect((await loadError()).message).toContain(
      `tensors[2].kind: expected 'param' (the header has no optimizer), found "optim"`,
    );
  });

  it('the genuine header still loads, and NaN losses saved as null come back as null', async () => {
    await saveCheckpoint(dir, { ...genuine(), meta: { losses: [Number.NaN, 1] } });
    expect(headerOf(await readFile(file()))['meta']).toEqual({ losses: [null, 1] });
    expect((await loadCheckpoint(dir)).meta).toEqual({ losses: [null, 1] });
  });
});

describe('the Trainer refuses a tampered history with the same error', () => {
  // [what, the edit of meta.history, the field named]
  const cases: [string, (history: Header) => unknown, string][] = [
    ['epochs a number', (h) => void (h['epochs'] = 5), 'meta.history.epochs'],
    ['a string as history', () => 'abc', 'meta.history'],
    [
      'a step record whose step is a string',
      (h) => void (h['steps'][1].step = 'x'),
      'meta.history.steps[1].step',
    ],
    ['a loss as a string', (h) => void (h['steps'][0].loss = 'NaN'), 'meta.history.steps[0].loss'],
    ['an epoch record without seconds', (h) => void delete h['epochs'][0].seconds, 'meta.history.epochs[0]'],
  ];
  it.each(cases)('%s', async (_, edit, field) => {
    await run(dir, 8, false);
    const good = await readFile(file());
    const history = (headerOf(good) as Header)['meta'].history;
    expect(history.epochs.length).toBeGreaterThan(0);
    await writeFile(
      file(),
      reforge(good, (h: Header) => {
        h['meta'].history = edit(h['meta'].history) ?? h['meta'].history;
      }),
    );
    const error = await run(dir, 10, true).then(
      () => new Error('resumed'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(CheckpointCorruptError);
    expect(error.message).toContain(`has a malformed header: ${field}: expected `);
    expect((error as CheckpointError).context).toMatchObject({ path: file(), part: 'header', field });
  });
});

describe('a long history', () => {
  it('of 200,000 steps resumes (no argument list as long as the history)', async () => {
    await run(dir, 8, false);
    const good = await readFile(file());
    await writeFile(
      file(),
      reforge(good, (h: Header) => {
        const steps = h['meta'].history.steps;
        h['meta'].history.steps = Array.from({ length: 200_000 }, (_, i) => ({ ...steps[0], step: i + 1 }));
      }),
    );
    const resumed = await run(dir, 10, true);
    expect(resumed.steps).toBe(10);
  });
});

describe('what a header could not hold is refused on save', () => {
  const cases: [string, Partial<Checkpoint>, string][] = [
    ['a BigInt in meta', { meta: { nested: { big: 10n } } }, 'meta.nested.big'],
    ['optimizer.step -7.5', { optimizer: { name: 'adam', step: -7.5, states: {} } }, 'optimizer.step'],
    ['a step of 1e300', { step: 1e300 }, 'step'],
    [
      'a cursor past its dataset',
      { cursor: { epoch: 0, position: 20, rng: [1, 2, 3, 4], size: 16 } },
      'cursor.position',
    ],
  ];
  it.each(cases)('%s', async (_, change, field) => {
    const error = await saveCheckpoint(dir, { ...genuine(), ...change }).then(
      () => new Error('saved'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.message).toContain(`saveCheckpoint: ${field}: expected `);
    expect((error as CheckpointError).context).toMatchObject({ field });
  });

  it('a cycle in meta names where it closes', async () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop['self'] = loop;
    const error = await saveCheckpoint(dir, { ...genuine(), meta: { loop } }).then(
      () => new Error('saved'),
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.message).toContain('saveCheckpoint: meta.loop.self: expected JSON data');
  });
});
