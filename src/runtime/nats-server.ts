// A local nats-server (Debian's `nats-server` on PATH), on free loopback ports, under a watchdog that
// stops it when the process that started it goes away, however it goes: for a cluster of node
// processes on one machine (examples/multi-process.ts), the tests and the benchmarks.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';

/**
 * A local `nats-server` that `startNatsServer` started (for tests, examples and single-machine
 * runs); it goes when this process does.
 */
export interface NatsServer {
  /** 'nats://127.0.0.1:PORT' */
  readonly url: string;
  /** 'http://127.0.0.1:PORT', the monitoring endpoint (/connz, /varz ...). */
  readonly monitorUrl: string;
  /** Stops the server (SIGTERM: it closes its connections first) and waits until it has exited. */
  stop(): Promise<void>;
  /** The client port, on 127.0.0.1. */
  readonly port: number;
  /** Kills the server (SIGKILL, as a crash) and waits until it has exited. */
  kill(): Promise<void>;
}

/** Whether a `nats-server` binary is on the PATH (`startNatsServer` needs one). */
export function natsServerInstalled(): boolean {
  return spawnSync('sh', ['-c', 'command -v nats-server'], { stdio: 'ignore' }).status === 0;
}

// The watchdog: the shell starts the server, and a reader on the shell's stdin (a pipe from this
// process) kills it with the signal written there, or with TERM when the pipe closes: when this
// process ends, even by SIGKILL, the server goes too. The shell exits when the server does.
const WATCHDOG = `
nats-server "$@" & server=$!
exec 3<&0
{ read -r signal <&3; kill -s "\${signal:-TERM}" "$server" 2>/dev/null; } &
wait "$server"
`;

/** How `startNatsServer` starts the server. */
export interface ServerOptions {
  /** The client port (default: a free one): a restarted server takes its predecessor's. */
  readonly port?: number;
  /** More nats-server arguments ('--auth', TOKEN ...). */
  readonly args?: readonly string[];
  /** How long to wait for it to accept connections, in milliseconds (default 10 s). */
  readonly deadlineMs?: number;
}

/** Starts nats-server on free loopback ports and resolves once it accepts connections. */
export async function startNatsServer(options: ServerOptions = {}): Promise<NatsServer> {
  const { args = [], deadlineMs = 10_000 } = options;
  const [free, monitorPort] = (await freePorts(2)) as [number, number];
  const port = options.port ?? free;
  const child = spawn(
    'sh',
    ['-c', WATCHDOG, 'nats-server', '-a', '127.0.0.1', '-p', `${port}`, '-m', `${monitorPort}`, ...args],
    {
      stdio: ['pipe', 'ignore', 'pipe'],
    },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  // A write to a shell that has just exited fails (EPIPE): its exit is what is awaited anyway.
  child.stdin!.on('error', () => {});
  const exited = once(child, 'exit').then(() => child.stdin!.destroy());
  const signal = async (name: 'TERM' | 'KILL') => {
    if (!child.stdin!.writableEnded && !child.stdin!.destroyed) child.stdin!.end(`${name}\n`);
    await exited;
  };
  try {
    await accepting(port, child, deadlineMs);
  } catch (err) {
    await signal('KILL');
    throw new Error(`nats-server did not start on 127.0.0.1:${port}: ${(err as Error).message}\n${log}`);
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorUrl: `http://127.0.0.1:${monitorPort}`,
    stop: () => signal('TERM'),
    kill: () => signal('KILL'),
  };
}

/** Ports the system had free a moment ago: each bound to port 0 on 127.0.0.1, then released. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    for (const s of servers) s.close();
  }
}

/** Resolves once a TCP connection to the port succeeds; fails if the server exits or the deadline passes. */
async function accepting(port: number, child: ChildProcess, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('it exited');
    const socket = connect(port, '127.0.0.1');
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`no connection within ${deadlineMs} ms`);
    // A refused connection fails at once: poll every few milliseconds, not in a tight loop.
    await new Promise((resolve) => setTimeout(resolve, Math.min(2 ** attempt, 50)));
  }
}
