// The simulator's transports (Note [simulated transports], src/sim/transport.ts) against their closed
// forms: a message alone, messages queued on one link or on the broker, and pipelines whose step time
// adds the wire to the compute of Note [closed-form costs]. Every figure comes from TRANSPORT_DEFAULTS,
// so recalibrating the table keeps these tests true.
import { describe, expect, it } from 'vitest';
import { simulatePipeline } from '../../src/sim/pipeline.ts';
import { openLinks, serviceMs, TRANSPORT_DEFAULTS, transportParams } from '../../src/sim/transport.ts';

const MiB = 2 ** 20;
const tcp = TRANSPORT_DEFAULTS.tcp;
const nats = TRANSPORT_DEFAULTS.nats;
/** Bytes per ms of a transport. */
const rate = (p: { mbPerS: number }) => p.mbPerS * 1e3;

describe('links: closed forms', () => {
  it('tcp: a message alone takes latency + bytes / bandwidth; links never wait for each other', () => {
    const links = openLinks('tcp', tcp);
    const alone = tcp.latencyMs + MiB / rate(tcp);
    // Three links at once, the two directions of one pair among them: all alone.
    expect(links.send(0, MiB, 0, 1)).toBeCloseTo(alone, 12);
    expect(links.send(0, MiB, 1, 0)).toBeCloseTo(alone, 12);
    expect(links.send(0, MiB, 2, 3)).toBeCloseTo(alone, 12);
    expect(links.stats().queuedMs).toBe(0);
  });

  it('tcp: a second message on a busy link waits for the first to be sent', () => {
    const links = openLinks('tcp', tcp);
    const service = MiB / rate(tcp);
    links.send(0, MiB, 0, 1);
    expect(links.send(0, MiB, 0, 1)).toBeCloseTo(2 * service + tcp.latencyMs, 12);
    // Sent once the link is free again: alone.
    expect(links.send(10, MiB, 0, 1)).toBeCloseTo(10 + service + tcp.latencyMs, 12);
    expect(links.stats()).toMatchObject({ messages: 3, bytes: 3 * MiB, busiest: { resource: 'link 0->1' } });
    expect(links.stats().queuedMs).toBeCloseTo(service, 12);
  });

  it('nats: two hops, and a frame cut into chunks below max_payload, each with its fixed cost', () => {
    const links = openLinks('nats', nats);
    const bytes = 3 * MiB; // 4 chunks of at most 1 MiB - 20 bytes
    expect(Math.ceil(bytes / nats.chunkBytes)).toBe(4);
    expect(links.send(0, bytes, 0, 1)).toBeCloseTo(
      2 * nats.latencyMs + 4 * nats.perChunkMs + bytes / rate(nats),
      12,
    );
    expect(links.send(100, 64, 0, 1)).toBeCloseTo(
      100 + 2 * nats.latencyMs + nats.perChunkMs + 64 / rate(nats),
      12,
    );
  });

  it.each([2, 8, 63])('nats: %i links sending at once share the broker, k times slower than one', (k) => {
    // No latency or per-chunk cost: what is left is the shared-broker factor.
    const bare = { latencyMs: 0, perChunkMs: 0 };
    const broker = openLinks('nats', transportParams('nats', bare));
    const direct = openLinks('tcp', transportParams('tcp', bare));
    const last = (links: typeof broker) =>
      Math.max(...Array.from({ length: k }, (_, i) => links.send(0, MiB, i, i + 1)));
    const viaBroker = last(broker);
    const viaTcp = last(direct);
    expect(viaBroker).toBeCloseTo((k * MiB) / rate(nats), 9);
    expect(viaTcp).toBeCloseTo(MiB / rate(tcp), 12);
    expect(viaBroker / viaTcp).toBeCloseTo((k * tcp.mbPerS) / nats.mbPerS, 9);
    // The i-th message waited for the i before it: 0 + 1 + ... + (k-1) services.
    expect(broker.stats().queuedMs).toBeCloseTo(((k * (k - 1)) / 2) * (MiB / rate(nats)), 6);
    expect(broker.stats().busiest).toEqual({ resource: 'the broker', busyMs: expect.closeTo(viaBroker, 9) });
  });

  it('threads: free by default, every message alone', () => {
    const links = openLinks('threads', TRANSPORT_DEFAULTS.threads);
    expect(links.send(3, 64 * MiB, 0, 1)).toBe(3);
    expect(links.send(3, 64 * MiB, 0, 1)).toBe(3);
    expect(links.stats()).toEqual({ messages: 2, bytes: 128 * MiB, totalMs: 0, queuedMs: 0, busiest: null });
  });
});

describe('simulated pipelines over each transport', () => {
  const F = 1;
  const B = 2;
  const step = (
    transport: 'threads' | 'tcp' | 'nats',
    workers: number,
    microbatches: number,
    schedule: 'gpipe' | '1f1b',
    activationBytes = MiB,
  ) =>
    simulatePipeline({
      schedule,
      workers,
      microbatches,
      activationBytes,
      costs: { forward: F, backward: B, transport },
      record: false,
    });

  it('2 stages, 1 microbatch: forward, activation on the wire, forward, backward, gradient on the wire, backward', () => {
    const overTcp = tcp.latencyMs + serviceMs(tcp, MiB);
    expect(step('tcp', 2, 1, 'gpipe').makespan).toBeCloseTo(2 * F + 2 * B + 2 * overTcp, 12);
    // 1 MiB is 2 chunks of at most 1 MiB - 20 bytes; two hops each way.
    const overNats = 2 * nats.latencyMs + 2 * nats.perChunkMs + MiB / rate(nats);
    expect(step('nats', 2, 1, 'gpipe').makespan).toBeCloseTo(2 * F + 2 * B + 2 * overNats, 12);
    expect(step('threads', 2, 1, 'gpipe').makespan).toBe(2 * F + 2 * B);
  });

  it('GPipe over tcp, p=64, m=64: the closed form (m+p-1)(F+B) plus a message each way per boundary', () => {
    const [p, m] = [64, 64];
    const bytes = MiB / 2;
    const r = step('tcp', p, m, 'gpipe', bytes);
    // A link carries a message per F (or B) at most, faster than it can send one: nothing queues.
    expect(serviceMs(tcp, bytes)).toBeLessThan(F);
    expect(r.wire.queuedMs).toBe(0);
    expect(r.makespan).toBeCloseTo(
      (m + p - 1) * (F + B) + 2 * (p - 1) * (tcp.latencyMs + serviceMs(tcp, bytes)),
      6,
    );
  });

  it('1F1B, p=64, m=64, same compute: nats slower than tcp, slower than threads', () => {
    const [p, m] = [64, 64];
    const [threads, overTcp, overNats] = (['threads', 'tcp', 'nats'] as const).map((t) =>
      step(t, p, m, '1f1b'),
    );
    expect(threads!.makespan).toBe((m + p - 1) * (F + B));
    expect(overTcp!.makespan).toBeGreaterThan(threads!.makespan);
    expect(overNats!.makespan).toBeGreaterThan(overTcp!.makespan);
    // Every message of every link goes through the one broker: the step cannot be shorter than the
    // broker's work, and the broker is what the step waits for.
    const messages = 2 * (p - 1) * m;
    expect(overNats!.wire.messages).toBe(messages);
    const brokerMs = messages * serviceMs(nats, MiB);
    expect(overNats!.wire.busiest).toEqual({ resource: 'the broker', busyMs: expect.closeTo(brokerMs, 3) });
    expect(overNats!.makespan).toBeGreaterThanOrEqual(brokerMs);
    expect(overNats!.makespan).toBeLessThan(brokerMs + threads!.makespan);
  });
});
