// Opening TCP wires: the handshake that admits a connection (Note [tcp handshake]), a listener that
// routes the connections of several peers on one port to their links (pairs over 127.0.0.1: tcp-pipes.ts).
import { timingSafeEqual } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { InputError, ProtocolError } from '../errors.ts';
import { edgeName } from './codec.ts';
import { COORDINATOR, PROTOCOL_VERSION } from './envelope.ts';
import { TcpWire, type TcpWireOptions, wireLimits } from './tcp-wire.ts';

// Note [tcp handshake]
// Before any frame, the connecting side sends a hello, little-endian: the magic 'BFLH', the protocol
// version, the number of bytes that follow (at most MAX_HELLO_BYTES), the runtime's secret
// (SECRET_BYTES random bytes), its own id, the id of the host it wants, and the cluster id (UTF-8).
// The accepting side reads nothing else until the hello is whole and checked: the magic and the
// version first (garbage, or a newer protocol, is named as such from its first bytes), the length
// before anything is kept for it, then the cluster id and the secret (crypto.timingSafeEqual), and
// last that its link (sender -> wanted) has no connection yet. On any mismatch, or when no hello comes
// within `helloTimeoutMs`, the socket is destroyed without a reply and no frame read, and the refusal
// goes to `onRefused` as a ProtocolError whose `context.reason` says why. An admitted connection gets
// the reply 'BFLK' and the version, and from then on both ends are TcpWires.
// The secret keeps out other clusters and stray or stale connections. It is not encryption: it
// travels in the clear, as the frames do, and the listener does not prove that it knows it.
// With `tls`, the connection is TLS with certificates on both sides, each checked against the CA
// (mutual TLS; the CA is the trust anchor, host names are not checked: nodes are reached by
// address), and the hello and the frames travel inside it: a client without a certificate of that
// CA is refused by the TLS handshake, before its hello is read.

export const SECRET_BYTES = 32;
export const MAX_HELLO_BYTES = 1024;
const HELLO_MAGIC = 0x484c4642; // 'BFLH'
const OK_MAGIC = 0x4b4c4642; // 'BFLK'
const HELLO_HEAD = 12;
const HELLO_FIXED = SECRET_BYTES + 8;
const DEFAULT_TIMEOUT_MS = 10_000;

/** Why a connection was refused: `context.reason` of the ProtocolError. */
export type RefusalReason =
  | 'garbage'
  | 'version'
  | 'too long'
  | 'cluster'
  | 'secret'
  | 'duplicate'
  | 'timeout'
  | 'tls'
  | 'closed';

/** TLS on a data connection: PEM of the CA both sides' certificates are signed by, and this side's own. */
export interface WireTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface Hello {
  readonly cluster: string;
  readonly secret: Uint8Array;
  /** The connecting side's worker id (or COORDINATOR), and the one it wants to talk to. */
  readonly from: number;
  readonly to: number;
}

/** A hello as bytes (Note [tcp handshake]). */
export function encodeHello(h: Hello): Uint8Array {
  const cluster = Buffer.from(h.cluster, 'utf8');
  const bytes = new Uint8Array(HELLO_HEAD + HELLO_FIXED + cluster.length);
  const words = new DataView(bytes.buffer);
  words.setUint32(0, HELLO_MAGIC, true);
  words.setInt32(4, PROTOCOL_VERSION, true);
  words.setUint32(8, HELLO_FIXED + cluster.length, true);
  bytes.set(h.secret, HELLO_HEAD);
  words.setInt32(HELLO_HEAD + SECRET_BYTES, h.from, true);
  words.setInt32(HELLO_HEAD + SECRET_BYTES + 4, h.to, true);
  bytes.set(cluster, HELLO_HEAD + HELLO_FIXED);
  return bytes;
}

interface Refusal {
  readonly reason: RefusalReason;
  readonly expected: string;
  readonly found: string;
  readonly cause?: unknown;
}
/** What `parse` made of the bytes so far: more needed, a value and the bytes it used, or a refusal. */
type Parsed<T> = { need: true } | { value: T; used: number } | { refuse: Refusal };
const NEED = { need: true } as const;
const refuse = (reason: RefusalReason, expected: string, found: unknown): { refuse: Refusal } => ({
  refuse: { reason, expected, found: String(found) },
});

/** The magic and the version of a hello or a reply, checked as soon as they are in. */
function parseStart(bytes: Uint8Array, magic: number, what: string): { refuse: Refusal } | null {
  const words = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 4 && words.getUint32(0, true) !== magic)
    return refuse('garbage', what, `0x${words.getUint32(0, true).toString(16)} as its first word`);
  if (bytes.length >= 8 && words.getInt32(4, true) !== PROTOCOL_VERSION)
    return refuse('version', `protocol version ${PROTOCOL_VERSION}`, words.getInt32(4, true));
  return null;
}

function parseHello(bytes: Uint8Array, cluster: string, secret: Uint8Array): Parsed<Hello> {
  const start = parseStart(bytes, HELLO_MAGIC, "a hello (magic 'BFLH')");
  if (start !== null || bytes.length < HELLO_HEAD) return start ?? NEED;
  const words = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = words.getUint32(8, true);
  const lengths = `a hello of ${HELLO_FIXED} to ${MAX_HELLO_BYTES - HELLO_HEAD} bytes`;
  if (length > MAX_HELLO_BYTES - HELLO_HEAD) return refuse('too long', lengths, length);
  if (length < HELLO_FIXED) return refuse('garbage', lengths, length);
  if (bytes.length < HELLO_HEAD + length) return NEED;
  const at = HELLO_HEAD + SECRET_BYTES;
  const hello: Hello = {
    secret: bytes.subarray(HELLO_HEAD, at),
    from: words.getInt32(at, true),
    to: words.getInt32(at + 4, true),
    cluster: Buffer.from(bytes.buffer, bytes.byteOffset + at + 8, length - HELLO_FIXED).toString('utf8'),
  };
  if (hello.cluster !== cluster)
    return refuse('cluster', `cluster ${JSON.stringify(cluster)}`, hello.cluster);
  if (!timingSafeEqual(hello.secret, secret)) return refuse('secret', "the runtime's secret", 'another');
  if (hello.from < COORDINATOR || hello.to < COORDINATOR || hello.from === hello.to)
    return refuse('garbage', 'two different ids, workers or the coordinator', `${hello.from} -> ${hello.to}`);
  return { value: hello, used: HELLO_HEAD + length };
}

function parseOk(bytes: Uint8Array): Parsed<true> {
  const start = parseStart(bytes, OK_MAGIC, "the listener's reply (magic 'BFLK')");
  return start ?? (bytes.length < 8 ? NEED : { value: true, used: 8 });
}

/**
 * Reads the start of a stream off a socket until `parse` has it, within `timeoutMs`; then pauses the
 * socket and puts back what followed, for the wire. Rejects with a Refusal.
 */
function readStart<T>(
  socket: Socket,
  what: string,
  timeoutMs: number,
  parse: (bytes: Uint8Array) => Parsed<T>,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let bytes: Buffer = Buffer.alloc(0);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      socket.off('data', data).off('end', ended).off('close', ended).off('error', failed);
      socket.pause();
      settle();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject({ reason: 'timeout', expected: `${what} within ${timeoutMs} ms`, found: 'none' }),
        ),
      timeoutMs,
    );
    const data = (chunk: Buffer) => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const parsed = parse(bytes);
      if ('need' in parsed) return;
      if ('refuse' in parsed) return finish(() => reject(parsed.refuse));
      finish(() => {
        if (parsed.used < bytes.length) socket.unshift(bytes.subarray(parsed.used));
        resolve(parsed.value);
      });
    };
    const ended = () =>
      finish(() =>
        reject({ reason: 'closed', expected: what, found: `${bytes.length} bytes, then the end` }),
      );
    const failed = (err: Error) =>
      finish(() => reject({ reason: 'closed', expected: what, found: err.message, cause: err }));
    socket.on('data', data).on('end', ended).on('close', ended).on('error', failed);
  });
}

const refusalError = (where: string, r: Refusal) =>
  new ProtocolError(
    `${where}: connection refused (${r.reason}): expected ${r.expected}, found ${r.found}`,
    { phase: 'handshake', reason: r.reason, expected: r.expected, found: r.found },
    { cause: r.cause },
  );

function checkIdentity(cluster: string, secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES)
    throw new InputError(`secret: expected ${SECRET_BYTES} bytes (crypto.randomBytes(${SECRET_BYTES}))`);
  if (Buffer.byteLength(cluster, 'utf8') > MAX_HELLO_BYTES - HELLO_HEAD - HELLO_FIXED)
    throw new InputError(`cluster: an id of at most ${MAX_HELLO_BYTES - HELLO_HEAD - HELLO_FIXED} bytes`);
}

export interface ListenOptions extends TcpWireOptions {
  readonly cluster: string;
  readonly secret: Uint8Array;
  /** Default '127.0.0.1'; port 0 (the default) takes any free one. */
  readonly host?: string;
  readonly port?: number;
  /** How long a connection may take to send its hello (default 10 s). */
  readonly helloTimeoutMs?: number;
  /** Mutual TLS (Note [tcp handshake]): every connection must present a certificate of `tls.ca`. */
  readonly tls?: WireTls;
  /** Every refused connection, for logs and counters (Note [tcp handshake]). */
  readonly onRefused?: (error: ProtocolError) => void;
}

/**
 * One listening port for every peer of a node: admits authenticated connections (Note [tcp handshake])
 * and hands each to `accept(from, to)` for its link, whichever comes first. A second connection for
 * a link is refused for the listener's lifetime.
 */
export class TcpListener {
  private readonly arrived = new Map<string, TcpWire>();
  private readonly awaited = new Map<string, { resolve: (w: TcpWire) => void; reject: (e: Error) => void }>();
  private readonly linked = new Set<string>();
  private readonly handshakes = new Set<Socket>();
  private closed = false;

  private constructor(
    private readonly server: Server,
    private readonly options: ListenOptions,
  ) {}

  static listen(options: ListenOptions): Promise<TcpListener> {
    checkIdentity(options.cluster, options.secret);
    wireLimits(options);
    const { tls } = options;
    const server = tls
      ? createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: true })
      : createServer();
    const listener = new TcpListener(server, options);
    server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => void listener.admit(socket));
    if (tls) server.on('tlsClientError', (err: Error, socket: Socket) => listener.refuseTls(socket, err));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        // Accept errors (no file descriptors left ...) refuse that connection, nothing more.
        server.on('error', (err) => options.onRefused?.(refusalError('tcp listener', failure(err))));
        resolve(listener);
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The wire of the connection from `from` to `to` (edge 'worker 1 -> worker 0'), once it is admitted. */
  accept(from: number, to: number): Promise<TcpWire> {
    const edge = edgeName(from, to);
    const wire = this.arrived.get(edge);
    if (wire !== undefined) {
      this.arrived.delete(edge);
      return Promise.resolve(wire);
    }
    if (this.closed) return Promise.reject(new ProtocolError(`${edge}: the listener is closed`, { edge }));
    if (this.awaited.has(edge)) return Promise.reject(new InputError(`${edge}: accepted twice`, { edge }));
    return new Promise((resolve, reject) => this.awaited.set(edge, { resolve, reject }));
  }

  /**
   * Stops listening: handshakes in progress and admitted connections nobody accepted are closed,
   * pending accepts reject. Accepted wires belong to their links.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const socket of this.handshakes) socket.destroy();
    for (const wire of this.arrived.values()) wire.close();
    for (const [edge, { reject }] of this.awaited)
      reject(new ProtocolError(`${edge}: the listener closed before the peer connected`, { edge }));
    this.arrived.clear();
    this.awaited.clear();
  }

  private async admit(socket: Socket): Promise<void> {
    const where = `tcp ${socket.remoteAddress}:${socket.remotePort}`;
    // Whatever happens to a refused socket from now on, nothing is unhandled.
    socket.on('error', () => {});
    if (this.closed) return void socket.destroy();
    this.handshakes.add(socket);
    const { cluster, secret } = this.options;
    let hello: Hello;
    try {
      hello = await readStart(socket, 'a hello', this.options.helloTimeoutMs ?? DEFAULT_TIMEOUT_MS, (bytes) =>
        parseHello(bytes, cluster, secret),
      );
    } catch (r) {
      return this.refuse(socket, where, r as Refusal);
    } finally {
      this.handshakes.delete(socket);
    }
    if (this.closed) return void socket.destroy();
    const edge = edgeName(hello.from, hello.to);
    if (this.linked.has(edge))
      return this.refuse(socket, where, {
        reason: 'duplicate',
        expected: `one connection for ${edge}`,
        found: 'a second',
      });
    this.linked.add(edge);
    const ok = new Uint8Array(8);
    new DataView(ok.buffer).setUint32(0, OK_MAGIC, true);
    new DataView(ok.buffer).setInt32(4, PROTOCOL_VERSION, true);
    socket.write(ok);
    const wire = new TcpWire(socket, edge, this.options);
    const waiter = this.awaited.get(edge);
    this.awaited.delete(edge);
    if (waiter !== undefined) waiter.resolve(wire);
    else this.arrived.set(edge, wire);
  }

  /** A connection whose TLS handshake failed (no certificate, another CA, not TLS at all). */
  refuseTls(socket: Socket, err: Error): void {
    const where = `tls ${socket.remoteAddress}:${socket.remotePort}`;
    this.refuse(socket, where, {
      reason: 'tls',
      expected: 'a TLS client with a certificate of the cluster CA',
      found: err.message,
      cause: err,
    });
  }

  private refuse(socket: Socket, where: string, refusal: Refusal): void {
    socket.destroy();
    if (!this.closed) this.options.onRefused?.(refusalError(where, refusal));
  }
}

const failure = (err: Error): Refusal => ({
  reason: 'closed',
  expected: 'a connection',
  found: err.message,
  cause: err,
});

export interface ConnectOptions extends TcpWireOptions, Hello {
  /** Default '127.0.0.1'. */
  readonly host?: string;
  readonly port: number;
  /** Mutual TLS: this side's certificate, and the CA the listener's must be signed by. */
  readonly tls?: WireTls;
  /** For the connection and the listener's reply (default 10 s). */
  readonly timeoutMs?: number;
}

/**
 * Opens the link `from -> to` to a TcpListener: connects, says hello (Note [tcp handshake]), and waits
 * for the reply. A refusal, a timeout or a connection error is a ProtocolError with `context.reason`.
 */
export async function connectTcp(options: ConnectOptions): Promise<TcpWire> {
  checkIdentity(options.cluster, options.secret);
  wireLimits(options);
  const host = options.host ?? '127.0.0.1';
  const socket = options.tls
    ? // Nodes are reached by address: the CA is what is checked, not a host name.
      tlsConnect({ host, port: options.port, ...options.tls, checkServerIdentity: () => undefined })
    : connect({ host, port: options.port });
  socket.write(encodeHello(options));
  try {
    await readStart(socket, "the listener's reply", options.timeoutMs ?? DEFAULT_TIMEOUT_MS, parseOk);
  } catch (r) {
    socket.on('error', () => {}).destroy();
    const refused = r as Refusal;
    throw refusalError(
      `${edgeName(options.from, options.to)} to tcp ${host}:${options.port}`,
      refused.reason === 'closed' && refused.cause === undefined
        ? {
            ...refused,
            found: `${refused.found} (a wrong secret or cluster, another version, or a duplicate)`,
          }
        : refused,
    );
  }
  return new TcpWire(socket, edgeName(options.to, options.from), options);
}
