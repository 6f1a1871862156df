// The wires between simulated hosts: when a message sent at some time arrives, on each transport, and
// what it waits for on the way (Note [simulated transports]).

// Note [simulated transports]
// A message of b bytes is on the wire for its service time, perChunk * chunks(b) + b / bandwidth, with
// chunks(b) = max(1, ceil(b / chunkBytes)). Sent at time t, it arrives at:
//   threads  t + latency + service                              every message alone
//   tcp      max(t, free[from->to]) + service + latency          one FIFO per directed link
//   nats     max(t + latency, free[broker]) + service + latency  one FIFO for every link, two hops
// where free[r] is when resource r has finished the messages before this one, and then becomes this
// one's end of service (store and forward: a message holds its link or the broker for its whole
// service time, in the order they were sent).
// - threads: in-process MessagePorts; tensors are transferred, not copied, so by default messages are
//   free, as the simulator always had it (a replay sets the latency a real trace shows).
// - tcp: one connection per pair of hosts that talk, full duplex: each direction is a link of its own
//   bandwidth, and links never slow each other down.
// - nats: every chunk goes to the broker and from there to the subscriber: two hops of latency, and the
//   broker forwards the chunks of all links one after the other, so k links sending at once share its
//   bandwidth and the last of them waits k service times.
// Not modelled: the codec's time on the sender's and receiver's cores, the 20-byte head of a NATS
// chunk, TCP windows and slow starts, the NATS client's own socket. So a stream of messages on one link
// runs at the measured bandwidth, which is what the defaults below were measured as.

/** How envelopes travel between hosts: in-process ports, direct TCP links, or a NATS broker. */
export const TRANSPORT_KINDS = ['threads', 'tcp', 'nats'] as const;
/** A transport's name: 'threads', 'tcp' or 'nats'. */
export type TransportKind = (typeof TRANSPORT_KINDS)[number];

/** The link parameters of one transport. */
export interface TransportParams {
  /** One hop, in ms (a NATS message takes two). */
  latencyMs: number;
  /** MB/s (10^6 bytes per second) of one directed link (tcp) or of the broker (nats); Infinity: free. */
  mbPerS: number;
  /** The fixed service time of each chunk (a whole message, below chunkBytes), in ms. */
  perChunkMs: number;
  /** The largest chunk a message is cut into (Infinity: sent whole). */
  chunkBytes: number;
}

// The defaults. Bandwidths and the per-chunk cost come from throughput measured on one machine between
// two Node processes (loopback), 64 KiB-1 MiB messages unless said; the bandwidths are the cluster
// benchmark's 2026-12-05 medians (docs/measurements.md). The cluster benchmark
// (`npm run bench -- cluster --json`) reports bandwidth-tcp and bandwidth-nats in MB/s: to recalibrate,
// put its figures in mbPerS here, and the run in docs/measurements.md. The latencies were not measured.
/**
 * Each transport's link parameters, as the simulator assumes them unless told otherwise: bandwidths
 * measured between two Node processes on one machine (loopback); the latencies are assumptions.
 */
export const TRANSPORT_DEFAULTS: Record<TransportKind, TransportParams> = {
  // Free, as before transports were modelled: `--latency` or a replay sets what a run needs.
  threads: {
    latencyMs: 0,
    mbPerS: Number.POSITIVE_INFINITY,
    perChunkMs: 0,
    chunkBytes: Number.POSITIVE_INFINITY,
  },
  tcp: {
    latencyMs: 0.05, // assumed: a one-way loopback hop between two Node event loops, tens of µs
    mbPerS: 857, // backflow's TCP wire carried 857 MB/s, median (a plain loopback socket: about 1,500)
    perChunkMs: 0, // not measured; at 0.86 GB/s a message's bytes outweigh it beyond a few KiB
    chunkBytes: Number.POSITIVE_INFINITY, // a frame goes whole
  },
  nats: {
    latencyMs: 0.05, // per hop, assumed as for tcp
    mbPerS: 241, // backflow's NATS wire carried 241 MB/s through nats-server, median
    perChunkMs: 0.002, // 64-byte messages at 423k/s: 2.36 µs each, less 64 bytes at 241 MB/s (0.27 µs)
    chunkBytes: 2 ** 20 - 20, // the default max_payload, 1 MiB, less the chunk's head (Note [NATS chunks], src/protocol/nats-wire.ts)
  },
};

/**
 * How a transport routes a message: how many hops of latency it takes, and the resource it holds for
 * its service time (null: none, messages never wait for each other). A new transport is its name in
 * TRANSPORT_KINDS, its defaults in TRANSPORT_DEFAULTS and one line here.
 */
const ROUTES: Record<TransportKind, { hops: number; resource: (from: number, to: number) => string | null }> =
  {
    threads: { hops: 1, resource: () => null },
    tcp: { hops: 1, resource: (from, to) => `link ${from}->${to}` },
    nats: { hops: 2, resource: () => 'the broker' },
  };

/** What messages spent on the wire in one simulated step. */
export interface WireStats {
  /** Messages between workers. */
  messages: number;
  /** Their bytes. */
  bytes: number;
  /** Summed over messages: from send to receipt (ms). */
  totalMs: number;
  /** Summed over messages: waiting for a link or the broker busy with earlier ones (ms). */
  queuedMs: number;
  /** The link or broker busy longest, and for how long (ms); null when messages hold none. */
  busiest: {
    /** Which: a TCP link ('link 0->1') or the NATS broker. */
    resource: string;
    /** How long it was busy, in milliseconds. */
    busyMs: number;
  } | null;
}

/** The links of one simulated step: they keep when each link or broker is free again. */
export interface Links {
  /** When a message sent at `now` arrives. Calls come in the order of `now` (it never goes back). */
  send(now: number, bytes: number, from: number, to: number): number;
  stats(): WireStats;
}

/** The parameters of `kind`, with the given ones in place of its defaults. */
export function transportParams(
  kind: TransportKind,
  overrides: Partial<TransportParams> = {},
): TransportParams {
  const params = { ...TRANSPORT_DEFAULTS[kind] };
  for (const [key, value] of Object.entries(overrides) as [keyof TransportParams, number | undefined][])
    if (value !== undefined) params[key] = value;
  return params;
}

/** A message's time on the wire: its chunks' fixed cost and its bytes (Note [simulated transports]). */
export function serviceMs(params: TransportParams, bytes: number): number {
  const chunks = Math.max(1, Math.ceil(bytes / params.chunkBytes));
  return chunks * params.perChunkMs + bytes / (params.mbPerS * 1e3);
}

/** From send to receipt for a message alone on its links. */
export function aloneMs(kind: TransportKind, params: TransportParams, bytes: number): number {
  return ROUTES[kind].hops * params.latencyMs + serviceMs(params, bytes);
}

/** Fresh links of `kind` for one simulated step (Note [simulated transports]). */
export function openLinks(kind: TransportKind, params: TransportParams): Links {
  const { hops, resource } = ROUTES[kind];
  const free = new Map<string, number>();
  const busy = new Map<string, number>();
  const stats: WireStats = { messages: 0, bytes: 0, totalMs: 0, queuedMs: 0, busiest: null };
  return {
    send(now, bytes, from, to) {
      const service = serviceMs(params, bytes);
      const r = resource(from, to);
      let arrive: number;
      if (r === null) arrive = now + hops * params.latencyMs + service;
      else {
        // It reaches its resource after every hop but the last, waits there for the messages before it.
        const reach = now + (hops - 1) * params.latencyMs;
        const start = Math.max(reach, free.get(r) ?? 0);
        free.set(r, start + service);
        busy.set(r, (busy.get(r) ?? 0) + service);
        stats.queuedMs += start - reach;
        arrive = start + service + params.latencyMs;
      }
      stats.messages++;
      stats.bytes += bytes;
      stats.totalMs += arrive - now;
      return arrive;
    },
    stats() {
      let busiest: WireStats['busiest'] = null;
      for (const [r, ms] of busy)
        if (busiest === null || ms > busiest.busyMs) busiest = { resource: r, busyMs: ms };
      return { ...stats, busiest };
    },
  };
}

/** Links where every message takes `delay` alone, whatever else is in flight (a cost model's `message`). */
export function independentLinks(delay: (bytes: number, from: number, to: number) => number): Links {
  const stats: WireStats = { messages: 0, bytes: 0, totalMs: 0, queuedMs: 0, busiest: null };
  return {
    send(now, bytes, from, to) {
      const d = delay(bytes, from, to);
      stats.messages++;
      stats.bytes += bytes;
      stats.totalMs += d;
      return now + d;
    },
    stats: () => ({ ...stats }),
  };
}
