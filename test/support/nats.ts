// NATS in tests: the run's server (started by the global setup, test/support/nats-setup.ts) and a
// private one for a test that stops or kills its server.
import { describe, inject } from 'vitest';
import { type NatsServer, type ServerOptions, startNatsServer } from './nats-server.ts';

/** The URL of the run's nats-server, or undefined when nats-server is not installed. */
export function natsUrl(): string | undefined {
  return inject('nats')?.url;
}

/** Its monitoring endpoint (/connz, /varz ...), or undefined. */
export function natsMonitorUrl(): string | undefined {
  return inject('nats')?.monitorUrl;
}

/**
 * A describe that skips when nats-server is not installed (the run says so once, at its end). Its
 * tests take milliseconds: one that waits for an event that never comes fails in 10 s, not 60.
 */
export function describeNats(name: string, body: () => void): void {
  (natsUrl() === undefined ? describe.skip : describe)(name, { timeout: 10_000 }, body);
}

/**
 * A nats-server of the calling test's own, on free ports, for a test that stops or kills it; the test
 * stops it at its end (stopping a dead one is fine). Only inside describeNats.
 */
export function privateNatsServer(options: ServerOptions = {}): Promise<NatsServer> {
  return startNatsServer(options);
}
