// What a coordinator and its node processes say to each other over NATS, and the checks on what
// arrives: the subjects, a node's announcement, the cluster options (Note [rendezvous]).
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { InputError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../protocol/envelope.ts';
import { checkEndpoint, type NatsEndpoint } from '../protocol/nats-connect.ts';
import { subjectToken } from '../protocol/nats-wire.ts';
import type { WireTlsFiles } from '../protocol/node-wires.ts';
import { kernelsInUse } from '../tensor/default-kernels.ts';

// Note [rendezvous]
// A node process joins a cluster by name: it answers `backflow.<cluster>.discover` and announces
// itself on `backflow.<cluster>.join` (its id, name, hosts offered, data address, the versions that
// must match: protocol, backflow, Node major, and the kernels it can run, among which must be the
// coordinator's: its hosts run those, named in their HostInit). A coordinator first asks
// `backflow.<cluster>.coordinator` whether the cluster already has one (it answers there itself from
// then on), then asks for announcements until it has its nodes or its deadline passes, whose error
// names who joined and who is missing. It takes the nodes sorted by name (ties by id), gives each a
// contiguous block of worker ids, a runtime id and a secret of 32 random bytes, and ships the packed
// plan (`assign`); each node starts its hosts, which listen, and answers with their ports; then every
// node gets every address (`connect`), its hosts open their links (Note [node links]) and compile the
// plan, and the coordinator checks their placements against its own. A node serves one runtime at a
// time: a second coordinator's `assign` is refused with the first one's name. From then on, control
// calls go to `backflow.<cluster>.node.<id>` (Note [NATS calls]); nodes publish heartbeats (with each
// host's status board) and deaths on `backflow.<cluster>.events.<runtime>`, the coordinator its own
// heartbeats on `backflow.<cluster>.beat.<runtime>`. A node silent for `deadAfterMs`, or whose data
// connection breaks, fails the step in flight with a WorkerError naming it, its worker, and what that
// worker was last seen doing; a node whose coordinator is silent that long stops its hosts and exits.

/** The NATS subjects of a cluster. */
export function subjects(cluster: string) {
  const c = `backflow.${subjectToken(cluster, 'cluster.name')}`;
  return {
    discover: `${c}.discover`,
    join: `${c}.join`,
    coordinator: `${c}.coordinator`,
    node: (id: string) => `${c}.node.${id}`,
    events: (runtime: string) => `${c}.events.${runtime}`,
    beat: (runtime: string) => `${c}.beat.${runtime}`,
  };
}

/** A node process, as it announces itself. */
export interface Announcement {
  /** Unique per process: a subject token. */
  readonly id: string;
  /** For people and for the order of worker ids (default hostname-pid). */
  readonly name: string;
  /** Hosts it offers (worker threads). */
  readonly hosts: number;
  /** The address the coordinator and other nodes reach its hosts' data ports at. */
  readonly address: string;
  /** Its hosts' first data port (host i at port + i), or 0: any free port each. */
  readonly port: number;
  readonly protocol: number;
  readonly backflow: string;
  readonly nodeMajor: number;
  /** Serving a runtime now (its coordinator's name), or null. */
  readonly busy: string | null;
  /** Its data links are mutual TLS. */
  readonly tls: boolean;
  /**
   * The kernels it can run, by name, best first (KERNELS_OFFERED): its hosts run the coordinator's,
   * which must be among them (an FMA kernel rounds differently).
   */
  readonly kernels: readonly string[];
}

const ANNOUNCEMENT_KEYS = [
  'id',
  'name',
  'hosts',
  'address',
  'port',
  'protocol',
  'backflow',
  'nodeMajor',
  'busy',
  'tls',
  'kernels',
];

/** An announcement from the network, checked field by field; null if it is not one (dropped). */
export function readAnnouncement(v: unknown): Announcement | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const r = v as Record<string, unknown>;
  const keys = Object.keys(r);
  if (keys.length !== ANNOUNCEMENT_KEYS.length || !ANNOUNCEMENT_KEYS.every((k) => Object.hasOwn(r, k)))
    return null;
  const str = (x: unknown, max: number) => typeof x === 'string' && x.length > 0 && x.length <= max;
  const int = (x: unknown, lo: number, hi: number) =>
    Number.isInteger(x) && (x as number) >= lo && (x as number) <= hi;
  if (!str(r.id, 64) || !/^[A-Za-z0-9_-]+$/.test(r.id as string)) return null;
  if (!str(r.name, 256) || !str(r.address, 256) || !str(r.backflow, 64)) return null;
  if (
    !int(r.hosts, 1, 1024) ||
    !int(r.port, 0, 65535) ||
    !int(r.protocol, 0, 2 ** 31) ||
    !int(r.nodeMajor, 0, 1000)
  )
    return null;
  if (r.busy !== null && !str(r.busy, 512)) return null;
  if (typeof r.tls !== 'boolean') return null;
  const kernels = r.kernels;
  if (
    !Array.isArray(kernels) ||
    kernels.length < 1 ||
    kernels.length > 8 ||
    !kernels.every((k) => str(k, 64))
  )
    return null;
  return r as unknown as Announcement;
}

/** What must match between a coordinator and its nodes, or null when it does. */
export function mismatch(a: Announcement, version: string): string | null {
  if (a.protocol !== PROTOCOL_VERSION)
    return `protocol version ${a.protocol}, the coordinator's is ${PROTOCOL_VERSION}`;
  if (a.backflow !== version) return `backflow ${a.backflow}, the coordinator runs ${version}`;
  const kernels = kernelsInUse();
  if (!a.kernels.includes(kernels))
    return `kernels ${a.kernels.join(', ')} only, not the coordinator's ${kernels} (they round differently: BACKFLOW_WASM_RELAXED=0 or BACKFLOW_KERNELS=ts on the coordinator picks kernels every node runs)`;
  const major = nodeMajor();
  if (a.nodeMajor !== major)
    return `Node ${a.nodeMajor}, the coordinator runs Node ${major} (bitwise equal sums need the same Math)`;
  return null;
}

export function nodeMajor(): number {
  return Number(process.versions.node.split('.')[0]);
}

let version: string | null = null;

/** This backflow's version (package.json's, from the sources or the built package). */
export function backflowVersion(): string {
  if (version !== null) return version;
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'backflow-runtime' && typeof pkg.version === 'string') return (version = pkg.version);
    } catch {}
  }
  return (version = 'unknown');
}

/** The name a process goes by in announcements and errors, by default. */
export function defaultName(): string {
  return `${hostname()}-${process.pid}`;
}

/** How a runtime reaches node processes through NATS (RuntimeOptions.cluster). */
export interface NatsClusterOptions {
  /** The NATS server(s): 'nats://host:4222', 'tls://host:4222', or a list of one NATS cluster's. */
  readonly nats: string | readonly string[];
  /** The cluster's name: the node processes were started with `--cluster NAME`. */
  readonly name: string;
  /** How many nodes to wait for, or their names (then an error names the ones missing). */
  readonly nodes: number | readonly string[];
  /** What carries the envelopes between nodes: direct TCP connections (default) or NATS subjects. */
  readonly data?: 'tcp' | 'nats';
  /** How long to wait for the nodes (default 30 s). */
  readonly joinTimeoutMs?: number;
  /** How often nodes and the coordinator say they are alive (default 500 ms). */
  readonly heartbeatMs?: number;
  /** Silence after which a node (or the coordinator, for a node) counts as gone (default 5 s). */
  readonly deadAfterMs?: number;
  /** A token the NATS server requires. */
  readonly token?: string;
  /** A user name the NATS server requires, with `pass`. */
  readonly user?: string;
  /** The password of `user`. */
  readonly pass?: string;
  /** A file holding an NKey seed ('SU...'): the server knows the public key, the seed never travels. */
  readonly nkeySeedFile?: string;
  /** TLS to the NATS server (a `tls://` URL): the CA that signed its certificate, and a client certificate and key if it asks. */
  readonly tls?: NatsEndpoint['tls'];
  /** Mutual TLS on the data links (data 'tcp'): PEM files of the CA and the coordinator's certificate. */
  readonly dataTls?: WireTlsFiles;
}

export interface ResolvedCluster {
  readonly endpoint: NatsEndpoint;
  readonly name: string;
  readonly nodes: number | readonly string[];
  readonly data: 'tcp' | 'nats';
  readonly joinTimeoutMs: number;
  readonly heartbeatMs: number;
  readonly deadAfterMs: number;
  readonly dataTls: WireTlsFiles | null;
}

const CLUSTER_KEYS = [
  'nats',
  'name',
  'nodes',
  'data',
  'joinTimeoutMs',
  'heartbeatMs',
  'deadAfterMs',
  'token',
  'user',
  'pass',
  'nkeySeedFile',
  'tls',
  'dataTls',
];

/** The cluster options with their defaults, checked before anything connects. */
export function resolveCluster(o: NatsClusterOptions): ResolvedCluster {
  const fail = (field: string, expected: string, found: unknown): never => {
    throw new InputError(
      `cluster.${field}: expected ${expected}, found ${JSON.stringify(found) ?? String(found)}`,
      {
        option: `cluster.${field}`,
        expected,
        found: String(found),
      },
    );
  };
  if (typeof o !== 'object' || o === null) fail('', 'an object { nats, name, nodes, ... }', o);
  for (const k of Object.keys(o))
    if (!CLUSTER_KEYS.includes(k)) fail(k, `one of ${CLUSTER_KEYS.join(', ')}`, k);
  const {
    nats,
    name,
    nodes,
    data = 'tcp',
    joinTimeoutMs = 30_000,
    heartbeatMs = 500,
    deadAfterMs = 5000,
  } = o;
  try {
    subjectToken(name, 'cluster.name');
  } catch {
    fail('name', "1 to 64 letters, digits, '-' or '_'", name);
  }
  if (typeof nodes === 'number') {
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 4096)
      fail('nodes', 'an integer in [1, 4096] or a list of names', nodes);
  } else if (
    !Array.isArray(nodes) ||
    nodes.length === 0 ||
    !nodes.every((n) => typeof n === 'string' && n !== '')
  )
    fail('nodes', 'a count or a non-empty list of node names', nodes);
  else if (new Set(nodes).size !== nodes.length) fail('nodes', 'distinct names', nodes);
  if (data !== 'tcp' && data !== 'nats') fail('data', "'tcp' or 'nats'", data);
  const ms = (field: string, v: number, lo: number) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo)
      fail(field, `milliseconds, at least ${lo}`, v);
  };
  ms('joinTimeoutMs', joinTimeoutMs, 1);
  ms('heartbeatMs', heartbeatMs, 10);
  ms('deadAfterMs', deadAfterMs, 2 * heartbeatMs);
  const { token, user, pass, nkeySeedFile, tls } = o;
  const endpoint = checkEndpoint(
    {
      servers: nats,
      ...(token !== undefined ? { token } : {}),
      ...(user !== undefined ? { user } : {}),
      ...(pass !== undefined ? { pass } : {}),
      ...(nkeySeedFile !== undefined ? { nkeySeedFile } : {}),
      ...(tls !== undefined ? { tls } : {}),
    },
    'cluster',
  );
  const { dataTls = null } = o;
  if (dataTls !== null) {
    const files = dataTls as unknown as Record<string, unknown>;
    if (
      typeof dataTls !== 'object' ||
      ['caFile', 'certFile', 'keyFile'].some((k) => typeof files[k] !== 'string')
    )
      fail('dataTls', '{ caFile, certFile, keyFile }: file paths', dataTls);
    if (data !== 'tcp') fail('dataTls', "data 'tcp' (over NATS, the NATS connection's tls applies)", data);
  }
  return { endpoint, name, nodes, data, joinTimeoutMs, heartbeatMs, deadAfterMs, dataTls };
}
