import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError, CheckpointIOError } from '../errors.ts';
import {
  CHECKPOINT_FILE,
  type Checkpoint,
  checkShapes,
  decodeCheckpoint,
  encodeCheckpoint,
} from './checkpoint-format.ts';

export { CHECKPOINT_FILE, CHECKPOINT_FORMAT_VERSION, type Checkpoint } from './checkpoint-format.ts';

/** The points of a save, in order, for tests that kill or fail a save part way (`SaveOptions.onPhase`). */
export type SavePhase = 'open' | 'header' | `tensor ${number}` | 'sync' | 'rename' | 'sync-dir' | 'done';

/** How `saveCheckpoint` saves. */
export interface SaveOptions {
  /** Create the directory when it is missing (default false: a missing directory is an error). */
  createDir?: boolean;
  /** Called at each phase; what it throws fails the save like a file-system error would. For tests. */
  onPhase?: (phase: SavePhase) => void;
}

/** What `loadCheckpoint` checks the checkpoint against. */
export interface LoadOptions {
  /** The parameters the caller will use, by name: any other name, missing name or shape is an error. */
  expect?: Readonly<Record<string, readonly number[]>>;
}

const liveTemps = new Set<string>();
let tempCounter = 0;

/**
 * Saves a checkpoint atomically: a temp file in the same directory, fsync, rename over the previous
 * checkpoint, fsync of the directory. A crash at any point leaves the previous checkpoint or the new
 * one, never a mix; a failure leaves the previous one and removes the temp file.
 */
export async function saveCheckpoint(
  dir: string,
  checkpoint: Checkpoint,
  options: SaveOptions = {},
): Promise<{
  /** The checkpoint file written. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
}> {
  const phase = options.onPhase ?? (() => {});
  const { chunks, bytes } = encodeCheckpoint(checkpoint);
  const target = join(dir, CHECKPOINT_FILE);
  if (options.createDir) {
    await ioStep('create the checkpoint directory', dir, () => mkdir(dir, { recursive: true }));
  }
  await removeStaleTemps(dir);
  const temp = join(dir, `${CHECKPOINT_FILE}.tmp-${process.pid}-${tempCounter++}`);
  liveTemps.add(temp);
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    phase('open');
    handle = await ioStep('create a temp file', temp, () => open(temp, 'wx', 0o644));
    for (let i = 0; i < chunks.length; i++) {
      phase(i === 0 ? 'header' : `tensor ${i - 1}`);
      await writeAll(handle, temp, chunks[i]!);
    }
    phase('sync');
    const h = handle;
    await ioStep('fsync the temp file', temp, () => h.sync());
    await ioStep('close the temp file', temp, () => h.close());
    handle = undefined;
    phase('rename');
    await ioStep('rename the temp file over the checkpoint', target, () => rename(temp, target));
    phase('sync-dir');
    await syncDir(dir);
    phase('done');
    return { path: target, bytes };
  } catch (error) {
    await handle?.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw asCheckpointError(error, 'save', temp);
  } finally {
    liveTemps.delete(temp);
  }
}

/** Loads and verifies the checkpoint in `dir` (see Note [checkpoint file format] for what is checked). */
export async function loadCheckpoint(dir: string, options: LoadOptions = {}): Promise<Checkpoint> {
  await removeStaleTemps(dir);
  const path = join(dir, CHECKPOINT_FILE);
  const file = await ioStep('read the checkpoint', path, () => readFile(path));
  const checkpoint = decodeCheckpoint(file, path);
  if (options.expect) checkShapes(checkpoint.params, options.expect, path);
  return checkpoint;
}

/** Whether `dir` holds a checkpoint file (not whether it is valid: `loadCheckpoint` says that). */
export async function hasCheckpoint(dir: string): Promise<boolean> {
  try {
    await (await open(join(dir, CHECKPOINT_FILE), 'r')).close();
    return true;
  } catch {
    return false;
  }
}

async function writeAll(
  handle: Awaited<ReturnType<typeof open>>,
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await ioStep('write the temp file', path, () =>
      handle.write(bytes, done, bytes.length - done),
    );
    done += bytesWritten;
  }
}

async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a directory to fsync it; its rename is as durable as it gets there.
  if (process.platform === 'win32') return;
  const handle = await ioStep('open the checkpoint directory', dir, () => open(dir, 'r'));
  try {
    await ioStep('fsync the checkpoint directory', dir, () => handle.sync());
  } finally {
    await handle.close();
  }
}

/**
 * Removes temp files that no save is writing: those of this process not in flight, and those whose
 * process has died (a crash during a save). Temp files of other live processes are left alone.
 */
async function removeStaleTemps(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // the save or load that follows reports the directory's problem
  }
  for (const name of names) {
    const m = /^(.*)\.tmp-(\d+)-\d+$/.exec(name);
    if (m === null || m[1] !== CHECKPOINT_FILE) continue;
    const path = join(dir, name);
    const pid = Number(m[2]);
    if (pid === process.pid ? liveTemps.has(path) : processAlive(pid)) continue;
    await unlink(path).catch(() => {});
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function ioStep<T>(what: string, path: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (error) {
    throw asCheckpointError(error, what, path);
  }
}

function asCheckpointError(error: unknown, what: string, path: string): CheckpointError {
  if (error instanceof CheckpointError) return error;
  const e = error as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const reason =
    code === 'ENOENT' && what === 'read the checkpoint'
      ? 'there is no checkpoint'
      : (e?.message ?? String(error));
  return new CheckpointIOError(
    `checkpoint: could not ${what} (${path}): ${reason}${code ? ` [${code}]` : ''}`,
    { path: e?.path ?? path, code, errno: e?.errno, syscall: e?.syscall },
    { cause: error },
  );
}
