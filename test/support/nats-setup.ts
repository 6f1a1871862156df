// Global setup (vitest.config.ts): one nats-server for the whole run when it is installed, its URLs
// provided to the tests (test/support/nats.ts), stopped at the end; without it the NATS tests skip,
// and one line at the end says which and how to run them.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { natsServerInstalled, startNatsServer } from './nats-server.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!natsServerInstalled()) {
    project.provide('nats', null);
    return async () => {
      console.log(
        `nats-server is not on PATH: skipped the NATS tests in ${natsTestFiles().join(', ')} (apt-get install nats-server to run them)`,
      );
    };
  }
  const server = await startNatsServer();
  project.provide('nats', { url: server.url, monitorUrl: server.monitorUrl });
  return () => server.stop();
}

/** The test files that use describeNats. */
function natsTestFiles(): string[] {
  const dir = fileURLToPath(new URL('..', import.meta.url));
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts') && readFileSync(join(dir, f), 'utf8').includes('describeNats('))
    .map((f) => `test/${f}`)
    .sort();
}
