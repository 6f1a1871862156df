// Connecting to NATS, the same way from the coordinator, a node process and a node's worker threads:
// the servers, the authentication that passes through to the server (token, user and password, an
// NKey seed file, TLS), and the reconnect policy.
import { readFileSync } from 'node:fs';
import {
  type ConnectionOptions,
  connect,
  type NatsConnection,
  nkeyAuthenticator,
} from '@nats-io/transport-node';
import { InputError } from '../errors.ts';

/** How to reach and authenticate to the NATS servers: plain data, so that it can go to a worker thread. */
export interface NatsEndpoint {
  /** 'nats://host:4222', or several of one NATS cluster. */
  readonly servers: string | readonly string[];
  /** A token the server requires (`authorization { token }`). */
  readonly token?: string;
  /** A user name the server requires, with `pass`. */
  readonly user?: string;
  /** The password of `user`. */
  readonly pass?: string;
  /** A file holding an NKey seed ('SU...'): the server knows the public key, the seed never travels. */
  readonly nkeySeedFile?: string;
  /** TLS: the CA that signed the server's certificate, and this client's certificate and key if the server asks. */
  readonly tls?: {
    /** PEM file of the CA that signed the server's certificate. */
    readonly caFile?: string;
    /** PEM file of this client's certificate. */
    readonly certFile?: string;
    /** PEM file of this client's private key. */
    readonly keyFile?: string;
  };
}

const ENDPOINT_KEYS = ['servers', 'token', 'user', 'pass', 'nkeySeedFile', 'tls'];
const TLS_KEYS = ['caFile', 'certFile', 'keyFile'];

/** The endpoint, checked (an InputError names the field, what it must be and what it is). */
export function checkEndpoint(e: unknown, where: string): NatsEndpoint {
  const fail = (field: string, expected: string, found: unknown): never => {
    throw new InputError(`${where}.${field}: expected ${expected}, found ${show(found)}`, {
      option: `${where}.${field}`,
      expected,
      found: show(found),
    });
  };
  if (typeof e !== 'object' || e === null || Array.isArray(e)) fail('', 'an object', e);
  const r = e as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!ENDPOINT_KEYS.includes(k)) fail(k, `one of ${ENDPOINT_KEYS.join(', ')}`, k);
  const servers = typeof r.servers === 'string' ? [r.servers] : r.servers;
  if (!Array.isArray(servers) || servers.length === 0)
    fail('servers', "a URL such as 'nats://host:4222', or a non-empty list of them", r.servers);
  for (const s of servers as unknown[])
    if (typeof s !== 'string' || !/^(nats|tls):\/\/[^\s/]+$/.test(s))
      fail('servers', "URLs such as 'nats://host:4222' or 'tls://host:4222'", s);
  for (const k of ['token', 'user', 'pass', 'nkeySeedFile'])
    if (r[k] !== undefined && (typeof r[k] !== 'string' || r[k] === '')) fail(k, 'a non-empty string', r[k]);
  if ((r.user === undefined) !== (r.pass === undefined))
    fail('pass', 'user and pass together', r.pass ?? r.user);
  if (r.tls !== undefined) {
    if (typeof r.tls !== 'object' || r.tls === null) fail('tls', '{ caFile?, certFile?, keyFile? }', r.tls);
    const t = r.tls as Record<string, unknown>;
    for (const k of Object.keys(t))
      if (!TLS_KEYS.includes(k)) fail(`tls.${k}`, `one of ${TLS_KEYS.join(', ')}`, k);
    for (const k of TLS_KEYS)
      if (t[k] !== undefined && typeof t[k] !== 'string') fail(`tls.${k}`, 'a file path', t[k]);
    if ((t.certFile === undefined) !== (t.keyFile === undefined))
      fail('tls', 'certFile and keyFile together', Object.keys(t));
  }
  return r as unknown as NatsEndpoint;
}

export interface ConnectNatsOptions {
  /** The connection's name in the server's monitoring (/connz). */
  readonly name: string;
  /**
   * Reconnect after a lost server for this long, in milliseconds (0: never). A node waits out a
   * server restart; a runtime fails its step at the first disconnect anyway.
   */
  readonly reconnectForMs?: number;
  /** How long the first connection may take (default 5 s). */
  readonly timeoutMs?: number;
}

/** How often a client pings the server, so that a silent server is noticed (ms). */
export const NATS_PING_MS = 2000;
const RECONNECT_WAIT_MS = 250;

/** A connection to the endpoint's servers; a refused authentication or no server is an InputError. */
export async function connectNats(
  endpoint: NatsEndpoint,
  options: ConnectNatsOptions,
): Promise<NatsConnection> {
  const e = checkEndpoint(endpoint, 'nats');
  const reconnectForMs = options.reconnectForMs ?? 0;
  const opts: ConnectionOptions = {
    servers: typeof e.servers === 'string' ? e.servers : [...e.servers],
    name: options.name,
    timeout: options.timeoutMs ?? 5000,
    pingInterval: NATS_PING_MS,
    maxPingOut: 2,
    reconnect: reconnectForMs > 0,
    maxReconnectAttempts: Math.max(1, Math.ceil(reconnectForMs / RECONNECT_WAIT_MS)),
    reconnectTimeWait: RECONNECT_WAIT_MS,
    reconnectJitter: 0,
    waitOnFirstConnect: false,
    ...(e.token !== undefined ? { token: e.token } : {}),
    ...(e.user !== undefined ? { user: e.user, pass: e.pass } : {}),
    ...(e.tls !== undefined ? { tls: { ...e.tls } } : {}),
  };
  if (e.nkeySeedFile !== undefined) {
    let seed: Uint8Array;
    try {
      seed = new TextEncoder().encode(readFileSync(e.nkeySeedFile, 'utf8').trim());
    } catch (err) {
      throw new InputError(`nats.nkeySeedFile: cannot read ${e.nkeySeedFile}: ${(err as Error).message}`, {
        option: 'nats.nkeySeedFile',
      });
    }
    opts.authenticator = nkeyAuthenticator(seed);
  }
  try {
    return await connect(opts);
  } catch (err) {
    const servers = [e.servers].flat().join(', ');
    throw new InputError(
      `cannot connect to NATS at ${servers}: ${(err as Error).message}${authHint(err as Error)}`,
      { servers, phase: 'connect' },
      { cause: err },
    );
  }
}

function authHint(err: Error): string {
  return /author|auth|permission/i.test(`${err.name} ${err.message}`)
    ? ' (the server refused the credentials: check the token, user, NKey seed or TLS certificate)'
    : '';
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(Array.isArray(v) ? `[${v.join(', ')}]` : v);
}
