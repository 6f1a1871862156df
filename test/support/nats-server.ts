// nats-server for tests: the runtime's local server (src/runtime/nats-server.ts), and what the global
// setup provides to the tests. Node-only: no vitest imports here but the type of what is provided.
export * from '../../src/runtime/nats-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's nats-server (its client and monitoring URLs), or null when nats-server is missing. */
    nats: { url: string; monitorUrl: string } | null;
  }
}
