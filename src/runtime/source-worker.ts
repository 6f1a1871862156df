// The host worker module when backflow runs from its TypeScript sources (tsx, vitest, `npm start`).
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';

// Note [source workers]
// A worker thread does not inherit its parent's loaders, so a `.ts` worker registers tsx itself
// (workers/tsx-register.mjs): tsx's loader starts on a thread of its own in every worker, and each of
// the worker's hundred modules is then resolved and loaded through it. That took 550-650 ms of CPU a
// worker here (against about 200 ms for the compiled package's worker), and a runtime of two workers
// 1.0-1.1 s to start; the test suite spent most of its time starting runtimes. So from source, the
// host worker and everything it imports are bundled into one ES module (esbuild, which tsx itself is
// built on: 150-450 ms), and every worker loads that file with no loader at all (about 180 ms each).
// The bundle is the same TypeScript, transformed as tsx transforms it.
//
// - It lives in node_modules/.cache/backflow/ under the checkout, so that packages stay external and
//   resolve from the checkout's node_modules. Its name is a fingerprint of the sources it may hold
//   (the path, size and modification time of every file under src/ and workers/): a process whose
//   sources have a bundle already (every test file's process, every node process after the first)
//   reads it, and a process after an edit makes another. It is written through a rename, so a reader
//   never sees half of it. Writing one removes the bundles not used for an hour; a process marks its
//   own used each time it starts workers, and writes it again if it was removed all the same.
// - A worker that imports user op modules (the `ops` option, Note [user ops on workers]) keeps the
//   `.ts` worker: those modules import the op registry from the sources, which must be the worker's
//   own registry, not a second copy inside a bundle. A node process learns the modules with the
//   init, after its workers started, so the assign says whether there are any (`opModules`).
// - Where the bundle cannot be made (no esbuild, a read-only checkout), the `.ts` worker is used.
// - The compiled package never comes here: its workers are plain `.js` modules.

/** Source mode: this module is TypeScript, not the compiled package. */
export const FROM_SOURCE = import.meta.url.endsWith('.ts');

/** The host worker module of this install: the compiled `.js` file, or the `.ts` source. */
export const HOST_WORKER = new URL(`../../workers/host.worker.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url);

/** A worker module and the flags its threads start with (PoolOptions' `url` and `execArgv`). */
export interface WorkerModule {
  readonly url: URL;
  readonly execArgv?: readonly string[];
}

/** This process's bundle: where it is, and its text (to put it back if another process pruned it). */
interface Bundle {
  readonly file: URL;
  readonly text: string;
}

let bundled: Promise<Bundle | null> | null = null;

/**
 * The module a pool of host workers should run (Note [source workers]): HOST_WORKER, or from source
 * and when the hosts import no op modules, the host worker bundled once for this process (its stack
 * traces through the bundle's source map, to the `.ts` files).
 */
export async function hostWorkerModule(opModules: boolean): Promise<WorkerModule> {
  if (!FROM_SOURCE || opModules) return { url: HOST_WORKER };
  bundled ??= bundleHostWorker().catch(() => null);
  const bundle = await bundled;
  if (bundle === null || !keep(bundle)) return { url: HOST_WORKER };
  return { url: bundle.file, execArgv: ['--enable-source-maps'] };
}

/**
 * Marks the bundle used now, so that no process prunes it while this one may start workers from it;
 * one pruned meanwhile (this process had not started workers for an hour) is written again, the same
 * code this process's other workers run. False when it can be neither.
 */
function keep(bundle: Bundle): boolean {
  const now = new Date();
  try {
    utimesSync(bundle.file, now, now);
    return true;
  } catch {
    try {
      write(bundle);
      return true;
    } catch {
      return false;
    }
  }
}

async function bundleHostWorker(): Promise<Bundle> {
  const root = new URL('../../', import.meta.url);
  const dir = new URL('node_modules/.cache/backflow/', root);
  const file = new URL(`host.worker.${fingerprint(root)}.mjs`, dir);
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch {}
  // A development dependency (tsx's own), loaded only here: the compiled package has no esbuild. The
  // name is not a literal, so that a bundler packing an application with backflow does not look for it.
  const name = 'esbuild';
  const esbuild = (await import(
    /* webpackIgnore: true */ /* @vite-ignore */ name
  )) as typeof import('esbuild');
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(HOST_WORKER)],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    sourcesContent: false,
    // Not written, but where the file goes: the source map's paths are relative to it.
    outdir: fileURLToPath(dir),
    write: false,
    logLevel: 'silent',
  });
  const bundle = { file, text: result.outputFiles[0]!.text };
  mkdirSync(dir, { recursive: true });
  write(bundle);
  prune(dir, file);
  return bundle;
}

/** Writes the bundle through a rename: a reader never sees half of it. */
function write({ file, text }: Bundle): void {
  const temporary = fileURLToPath(new URL(`host.worker.${process.pid}.tmp`, file));
  writeFileSync(temporary, text);
  renameSync(temporary, fileURLToPath(file));
}

/** A hash of the path, size and modification time of every file under src/ and workers/. */
function fingerprint(root: URL): string {
  const hash = createHash('sha256');
  for (const top of ['src', 'workers']) {
    const dir = fileURLToPath(new URL(`${top}/`, root));
    for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()) {
      const stat = statSync(`${dir}${name}`);
      if (stat.isFile()) hash.update(`${top}/${name}\0${stat.size}\0${stat.mtimeMs}\n`);
    }
  }
  return hash.digest('hex').slice(0, 16);
}

const STALE_MS = 3_600_000;

/** Removes the other bundles (and a dead process's temporary files) of `dir` not used for STALE_MS. */
function prune(dir: URL, keep: URL): void {
  const now = Date.now();
  for (const name of readdirSync(dir)) {
    const path = fileURLToPath(new URL(name, dir));
    if (!name.startsWith('host.worker.') || path === fileURLToPath(keep)) continue;
    try {
      if (now - statSync(path).mtimeMs > STALE_MS) rmSync(path, { force: true });
    } catch {
      // Removed by another process meanwhile.
    }
  }
}
