// Loaded with `--import` into worker threads when running from TypeScript source: tsx registers
// itself in worker threads only on Node >= 22.22, so a `.ts` worker on Node 20 needs this. Compiled
// workers (dist/workers/*.js) do not use it. On the main thread it does nothing (tsx, or vitest, is
// already there when source is run).
import { isMainThread } from 'node:worker_threads';

if (!isMainThread) {
  const { register } = await import('tsx/esm/api');
  register();
}
