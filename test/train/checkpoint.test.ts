import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CheckpointCorruptError,
  type CheckpointIOError,
  CheckpointShapeError,
  CheckpointTruncatedError,
  CheckpointVersionError,
} from '../../src/errors.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { Tensor, tensor } from '../../src/tensor/tensor.ts';
import {
  CHECKPOINT_FILE,
  CHECKPOINT_FORMAT_VERSION,
  type Checkpoint,
  hasCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from '../../src/train/checkpoint.ts';
import { expectBitwise, expectBitwiseAll } from '../support/expect.ts';
import { versionCheckpoint } from './fixtures/checkpoint-versions.ts';

const child = fileURLToPath(new URL('./fixtures/checkpoint-child.ts', import.meta.url));
const repo = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
let dir = '';

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backflow-ckpt-'));
  dirs.push(dir);
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** float32 and float64 tensors holding the awkward values: NaN payloads, -0, +-Inf, denormals. */
function awkward(): Record<string, Tensor> {
  const f32 = new Float32Array(8);
  new Uint32Array(f32.buffer).set([
    0x7fc00001, 0xffc12345, 0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x007fffff, 0x3f800000,
  ]);
  const f64 = new Float64Array(6);
  new BigUint64Array(f64.buffer).set([
    0x7ff8000000000abcn,
    0xfff0000000000001n,
    0x8000000000000000n,
    1n,
    0x000fffffffffffffn,
    0x7ff0000000000000n,
  ]);
  return {
    'enc.w': new Tensor('float32', [2, 4], f32),
    'enc.b': new Tensor('float64', [6], f64),
    empty: tensor([], { shape: [0, 3] }),
  };
}

function small(): Checkpoint {
  const params = awkward();
  const m = new Tensor('float64', [8], new Float64Array([-0, 1, Number.NaN, 5e-324, 2, 3, 4, 5]));
  return {
    step: 42,
    params,
    optimizer: {
      name: 'adam',
      step: 41,
      states: { 'enc.w': { m, v: new Tensor('float64', [8], new Float64Array(8).fill(0.5)) } },
    },
    rng: { data: new Rng(3).getState(), dropout: [1, 2, 3, 0xffffffff] },
    cursor: { epoch: 2, position: 96, rng: new Rng(5).getState(), size: 1000 },
    meta: { model: 'mlp', losses: [1.5, 0.25], nested: { ok: true } },
  };
}

function expectSame(a: Checkpoint, b: Checkpoint) {
  expect(a.step).toBe(b.step);
  expect(Object.keys(a.params).sort()).toEqual(Object.keys(b.params).sort());
  expectBitwiseAll(a.params, b.params);
  expect(a.optimizer?.name).toBe(b.optimizer?.name);
  expect(a.optimizer?.step).toBe(b.optimizer?.step);
  for (const [name, states] of Object.entries(b.optimizer?.states ?? {}))
    for (const [key, t] of Object.entries(states))
      expectBitwise(a.optimizer!.states[name]![key]!, t, `${name}.${key}`);
  expect(a.rng).toEqual(b.rng);
  expect(a.cursor).toEqual(b.cursor);
  expect(a.meta).toEqual(b.meta ?? {});
}

const file = () => join(dir, CHECKPOINT_FILE);
const listing = async () => (await readdir(dir)).sort();

async function loadError(options = {}): Promise<Error> {
  try {
    await loadCheckpoint(dir, options);
  } catch (error) {
    return error as Error;
  }
  throw new Error('loadCheckpoint succeeded');
}

describe('checkpoint round trip', () => {
  it('is bitwise: NaN payloads, -0, infinities, denormals, empty tensors; rng, cursor, meta', async () => {
    const saved = small();
    const { bytes } = await saveCheckpoint(dir, saved);
    expect((await readFile(file())).length).toBe(bytes);
    const loaded = await loadCheckpoint(dir);
    expectSame(loaded, saved);
    expect(loaded.params['enc.w']!.data.buffer).not.toBe(saved.params['enc.w']!.data.buffer);
    expect(await listing()).toEqual([CHECKPOINT_FILE]);
    expect(await hasCheckpoint(dir)).toBe(true);
  });

  it('a second save replaces the first', async () => {
    await saveCheckpoint(dir, versionCheckpoint(1));
    await saveCheckpoint(dir, versionCheckpoint(2));
    expectSame(await loadCheckpoint(dir), versionCheckpoint(2));
    expect(await listing()).toEqual([CHECKPOINT_FILE]);
  });

  it('saves without optimizer or cursor, and checks the expected parameter shapes', async () => {
    const c: Checkpoint = {
      step: 0,
      params: { w: tensor([[1, 2]]) },
      optimizer: null,
      rng: {},
      cursor: null,
    };
    await saveCheckpoint(dir, c);
    expectSame(await loadCheckpoint(dir, { expect: { w: [1, 2] } }), c);
  });
});

describe('checkpoint errors, each its own class', () => {
  it('a flipped byte anywhere in the file is a checksum error, naming the tensor when it is in one', async () => {
    await saveCheckpoint(dir, small());
    const good = await readFile(file());
    const headerBytes = good.readUInt32LE(12);
    const dataStart = 32 + headerBytes;
    // The tensors in file order (parameters sorted by name, then optimizer state) and their sizes.
    const regions = [
      ["parameter 'enc.b'", 48],
      ["parameter 'enc.w'", 32],
      ["parameter 'empty'", 0],
      ["optimizer state 'm' of 'enc.w'", 64],
      ["optimizer state 'v' of 'enc.w'", 64],
    ] as const;
    expect(good.length).toBe(dataStart + 48 + 32 + 64 + 64);
    for (let offset = 0; offset < good.length; offset++) {
      const bad = Buffer.from(good);
      bad[offset]! ^= 0xff;
      await writeFile(file(), bad);
      const error = await loadError();
      expect(error, `byte ${offset}`).toBeInstanceOf(CheckpointCorruptError);
      if (offset < 32) expect(error.message).toMatch(/prefix checksum|bad magic/);
      else if (offset < dataStart) expect(error.message).toMatch(/header checksum/);
      else {
        let at = dataStart;
        const region = regions.find(([, n]) => offset < (at += n))!;
        expect(error.message, `byte ${offset}`).toContain(`the checksum of ${region[0]} does not match`);
      }
    }
  });

  it('a file truncated at any length is a truncation error', async () => {
    await saveCheckpoint(dir, small());
    const good = await readFile(file());
    for (let length = 0; length < good.length; length++) {
      await writeFile(file(), good.subarray(0, length));
      const error = await loadError();
      expect(error, `length ${length}`).toBeInstanceOf(CheckpointTruncatedError);
      expect(error.message).toMatch(/is truncated/);
    }
  });

  it('a newer format version is a version error (and trailing bytes are corruption)', async () => {
    await saveCheckpoint(dir, small());
    const newer = await readFile(file());
    newer.writeUInt32LE(CHECKPOINT_FORMAT_VERSION + 1, 8);
    newer.writeUInt32LE(crc32(newer.subarray(0, 28)), 28);
    await writeFile(file(), newer);
    const error = await loadError();
    expect(error).toBeInstanceOf(CheckpointVersionError);
    expect(error.message).toContain(
      `format version ${CHECKPOINT_FORMAT_VERSION + 1}, newer than the version ${CHECKPOINT_FORMAT_VERSION}`,
    );
    await writeFile(file(), Buffer.concat([await readFile(file()), Buffer.from([0])]));
    await saveCheckpoint(dir, small());
    await writeFile(file(), Buffer.concat([await readFile(file()), Buffer.from([0])]));
    expect(await loadError()).toBeInstanceOf(CheckpointCorruptError);
  });

  it('parameters that do not match the expected names and shapes are a shape error listing each', async () => {
    await saveCheckpoint(dir, small());
    const error = await loadError({ expect: { 'enc.w': [4, 2], 'enc.b': [6], 'dec.w': [3] } });
    expect(error).toBeInstanceOf(CheckpointShapeError);
    expect(error.message).toContain(`'enc.w' has shape [2,4], expected [4,2]`);
    expect(error.message).toContain(`'dec.w' is missing (expected [3])`);
    expect(error.message).toContain(`'empty' is not an expected parameter`);
    await expect(
      loadCheckpoint(dir, { expect: { 'enc.w': [2, 4], 'enc.b': [6], empty: [0, 3] } }),
    ).resolves.toBeDefined();
  });

  it('a missing directory or checkpoint is an IO error with the errno', async () => {
    const missing = join(dir, 'no-such-dir');
    await expect(saveCheckpoint(missing, small())).rejects.toMatchObject({
      name: 'CheckpointIOError',
      code: 'ENOENT',
      errno: -2,
    });
    await expect(loadCheckpoint(missing)).rejects.toMatchObject({
      name: 'CheckpointIOError',
      code: 'ENOENT',
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/there is no checkpoint \[ENOENT\]/);
    expect(await hasCheckpoint(dir)).toBe(false);
    await saveCheckpoint(missing, small(), { createDir: true });
    expectSame(await loadCheckpoint(missing), small());
  });

  it('a read-only directory is an IO error with the errno, and the previous checkpoint stays intact', async () => {
    await saveCheckpoint(dir, versionCheckpoint(1));
    let result: { ok: boolean; name?: string; code?: string; errno?: number };
    if (process.getuid?.() === 0) {
      // Root writes through any mode bits: save from a child without capabilities (setpriv), so the
      // directory's mode bits apply to it; without setpriv, as the unprivileged user `nobody`.
      await chmod(dir, 0o555);
      const args = ['save-once', dir, '2'];
      const run = await runChild(args, {
        wrapper: ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--'],
      }).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
        await chmod(dir, 0o755);
        return runChild(args, { uid: 65534, gid: 65534 });
      });
      result = JSON.parse(run.lines.at(-1)!);
      await chmod(dir, 0o700);
    } else {
      await chmod(dir, 0o555);
      try {
        await saveCheckpoint(dir, versionCheckpoint(2));
        result = { ok: true };
      } catch (error) {
        result = { ok: false, ...(error as CheckpointIOError), name: (error as Error).name };
      } finally {
        await chmod(dir, 0o700);
      }
    }
    expect(result).toMatchObject({ ok: false, name: 'CheckpointIOError', code: 'EACCES', errno: -13 });
    expectSame(await loadCheckpoint(dir), versionCheckpoint(1));
    expect(await listing()).toEqual([CHECKPOINT_FILE]);
  });

  it('a full disk (ENOSPC in the middle of the writes) removes the temp file and keeps the previous checkpoint', async () => {
    await saveCheckpoint(dir, versionCheckpoint(1));
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'write',
    });
    const failing = saveCheckpoint(dir, versionCheckpoint(2), {
      onPhase: (p) => {
        if (p === 'tensor 2') throw full;
      },
    });
    await expect(failing).rejects.toMatchObject({
      name: 'CheckpointIOError',
      code: 'ENOSPC',
      errno: -28,
      cause: full,
    });
    expect(await listing()).toEqual([CHECKPOINT_FILE]);
    expectSame(await loadCheckpoint(dir), versionCheckpoint(1));
  });

  it('stale temp files of dead processes are cleaned on the next save or load; a live process keeps its own', async () => {
    const dead = await runChild(['save-once', dir, '1']);
    const stale = [`${CHECKPOINT_FILE}.tmp-${dead.pid}-0`, `${CHECKPOINT_FILE}.tmp-${process.pid}-999999`];
    const live = `${CHECKPOINT_FILE}.tmp-${process.ppid}-0`;
    for (const name of [...stale, live]) await writeFile(join(dir, name), 'partial');
    await loadCheckpoint(dir);
    expect(await listing()).toEqual([CHECKPOINT_FILE, live]);
    await writeFile(join(dir, stale[0]!), 'partial');
    await saveCheckpoint(dir, versionCheckpoint(2));
    expect(await listing()).toEqual([CHECKPOINT_FILE, live]);
  });
});

interface ChildRun {
  pid: number;
  lines: string[];
  signal: NodeJS.Signals | null;
}

/** Runs the fixture child; `onLine` may kill it. Resolves once it has exited and its output is read. */
function runChild(
  args: string[],
  options: { uid?: number; gid?: number; wrapper?: string[] } = {},
  onLine?: (line: string, proc: ChildProcess) => void,
): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const { wrapper = [], ...ids } = options;
    const command = [...wrapper, process.execPath, '--import', 'tsx', child, ...args];
    const proc = spawn(command[0]!, command.slice(1), {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...ids,
    });
    const lines: string[] = [];
    let pending = '';
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let nl = pending.indexOf('\n');
      while (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        onLine?.(line, proc);
        nl = pending.indexOf('\n');
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (code !== 0 && signal === null) reject(new Error(`checkpoint child exited with ${code}: ${stderr}`));
      else resolve({ pid: proc.pid!, lines, signal });
    });
  });
}

describe('a process killed during a save', () => {
  const phases = ['open', 'header', 'tensor 0', 'tensor 3', 'sync', 'rename', 'sync-dir', 'done'];

  it.each(phases)(
    'killed at phase "%s": the old or (once renamed) the new checkpoint loads, no temp file stays',
    async (phase) => {
      await saveCheckpoint(dir, versionCheckpoint(1));
      const run = await runChild(['kill-at', dir, '2', phase]);
      expect(run.signal).toBe('SIGKILL');
      const renamed = phases.indexOf(phase) > phases.indexOf('rename');
      expectSame(await loadCheckpoint(dir), versionCheckpoint(renamed ? 2 : 1));
      expect(await listing()).toEqual([CHECKPOINT_FILE]);
    },
  );

  it('SIGKILL at 20 random points of repeated saves: always exactly the last saved or the one in progress', async () => {
    const rng = new Rng(2024);
    await saveCheckpoint(dir, versionCheckpoint(0));
    let previous = 0; // the version that was on disk before this round
    let killedMidSave = 0;
    for (let round = 1; round <= 20; round++) {
      const first = round * 1000;
      // Each save prints 12 lines (writing, 10 phases, saved): kill after one of the first 3 saves' lines.
      const killAfter = 1 + rng.int(36);
      let seen = 0;
      const run = await runChild(['loop', dir, String(first)], {}, (_line, proc) => {
        if (++seen === killAfter) proc.kill('SIGKILL');
      });
      expect(run.signal).toBe('SIGKILL');
      const written = run.lines.filter((l) => l.startsWith('writing ')).map((l) => Number(l.split(' ')[1]));
      const saved = run.lines.filter((l) => l.startsWith('saved ')).map((l) => Number(l.split(' ')[1]));
      const inProgress = written.at(-1);
      const lastSaved = saved.at(-1) ?? previous;
      const allowed =
        inProgress === undefined || inProgress === lastSaved ? [lastSaved] : [lastSaved, inProgress];
      const loaded = await loadCheckpoint(dir);
      expect(allowed, `round ${round}: killed after line ${killAfter}, lines ${run.lines.length}`).toContain(
        loaded.step,
      );
      // Once the rename was announced and the directory synced, the new version must be there.
      if (inProgress !== undefined && run.lines.includes(`phase ${inProgress} sync-dir`))
        expect(loaded.step).toBe(inProgress);
      if (inProgress !== undefined && !run.lines.includes(`phase ${inProgress} rename`))
        expect(loaded.step).toBe(lastSaved);
      expectSame(loaded, versionCheckpoint(loaded.step));
      expect(await listing()).toEqual([CHECKPOINT_FILE]);
      previous = loaded.step;
      if (!run.lines.at(-1)!.startsWith('saved')) killedMidSave++;
    }
    expect(killedMidSave).toBeGreaterThan(0);
  });
});
