import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One nats-server for the run when it is installed; the NATS tests skip without it.
    globalSetup: ['test/support/nats-setup.ts'],
    // The engine's call pool poisons what it takes back (Note [call storages]).
    setupFiles: ['test/support/call-pool-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
