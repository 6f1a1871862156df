// Users' own ops on worker threads: the modules of the runtime's `ops` option, resolved once and
// imported by the coordinator and by every worker.
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError, OpModuleError } from '../errors.ts';
import { checkOpsKnown } from '../graph/check.ts';
import type { Graph } from '../graph/graph.ts';
import { builtinOps } from '../ops/builtins.ts';
import { hasOp } from '../ops/registry.ts';

// Note [user ops on workers]
// defineOp registers an op in the thread that calls it, and a worker thread starts with the built-in
// ops only. So the modules that define a graph's own ops are named in the `ops` option: the
// coordinator imports them first and checks that every op of the graph is known, so that a missing
// one is an OpError quoting its node before any worker starts rather than a failed start; then every
// worker imports them before it unpacks the graph and compiles the plan. Both go through
// `importOpModules`, in this file, so that a package name resolves to the same file in every thread.

const BUILTIN = new Set(builtinOps.map((op) => op.name));

/**
 * A module specifier of the `ops` option as every thread imports it: a file: URL for a path (a
 * relative one resolved against the working directory), a package name as it is.
 */
export function resolveOpModule(specifier: string): string {
  if (typeof specifier !== 'string' || specifier === '') {
    const found = JSON.stringify(specifier);
    throw new InputError(`ops: expected a module path, file: URL or package name, found ${found}`, {
      expected: 'a module specifier',
      found: specifier,
    });
  }
  if (specifier.startsWith('file:')) return new URL(specifier).href;
  if (isAbsolute(specifier)) return pathToFileURL(specifier).href;
  if (/^\.\.?([/\\]|$)/.test(specifier)) return pathToFileURL(resolve(process.cwd(), specifier)).href;
  return specifier;
}

/** Imports each module in order (one imported before is not run again); a failure names the module. */
export async function importOpModules(modules: readonly string[]): Promise<void> {
  for (const module of modules) {
    try {
      await import(module);
    } catch (err) {
      const thrown = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      throw new OpModuleError(`cannot import op module '${module}': ${thrown}`, { module }, { cause: err });
    }
  }
}

/**
 * Imports the `ops` modules in this thread and checks that every op of the graph is known where it
 * will run (Note [user ops on workers]); returns the modules, resolved, for the workers to import.
 */
export async function loadUserOps(
  graph: Graph,
  specifiers: readonly string[],
  onWorkers: boolean,
): Promise<string[]> {
  if (!Array.isArray(specifiers)) {
    throw new InputError(`ops: expected an array of modules, found ${JSON.stringify(specifiers)}`, {
      expected: 'an array of module specifiers',
      found: specifiers,
    });
  }
  const modules = specifiers.map(resolveOpModule);
  await importOpModules(modules);
  const loaded =
    modules.length === 0
      ? "not a built-in op, and no op modules were loaded (the `ops` option names the modules that define a graph's own ops)"
      : `neither a built-in op nor defined by the op modules ${modules.map((m) => `'${m}'`).join(', ')}`;
  const unknown = (op: string): string | null => {
    if (!hasOp(op)) return `unknown op '${op}': ${loaded}`;
    // Which module defines an op cannot be told (one imported before is not run again): only an
    // empty list shows that the workers will miss a user op.
    if (onWorkers && modules.length === 0 && !BUILTIN.has(op)) {
      return `op '${op}' is defined in this thread only: worker threads know the built-in ops and those of the modules in the \`ops\` option, which names none; add the module that defines '${op}' to \`ops\``;
    }
    return null;
  };
  checkOpsKnown(graph, unknown, { modules });
  return modules;
}
