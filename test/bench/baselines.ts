/**
 * Baselines without the runtime, measured in the same run as the runtime's cases: plain workers (eval
 * code, no backflow protocol) passing messages over a direct MessageChannel, probes of what the
 * machine gives two threads at the moment, and two plain processes on a loopback TCP socket.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { MessageChannel, Worker } from 'node:worker_threads';

// The raw baseline's worker: plain JavaScript (eval), no runtime. It receives a port, then answers
// every envelope with one envelope holding one new message per message received (a fresh f32[1,4]
// transferred, as the runtime's activations are), until a message has made `hops` hops; it tells
// the parent how many lanes ended on its side.
const RAW_WORKER = `
const { parentPort } = require('node:worker_threads');
parentPort.once('message', ({ port, self, lanes, hops }) => {
  let ended = 0;
  const send = (messages, tx) => port.postMessage({ v: 1, gen: 0, from: self, messages }, tx);
  port.on('message', (envelope) => {
    const before = ended;
    const out = [];
    const tx = [];
    for (const m of envelope.messages) {
      if (m.hop + 1 >= hops) { ended++; continue; }
      const src = new Float32Array(m.tensor.buffer);
      const data = new Float32Array(4);
      for (let i = 0; i < 4; i++) data[i] = src[i] + 1;
      out.push({ kind: 'activation', step: m.step, mb: m.mb, replica: 0, node: m.node + 1, hop: m.hop + 1,
        tensor: { dtype: 'float32', shape: [1, 4], buffer: data.buffer } });
      tx.push(data.buffer);
    }
    if (out.length > 0) send(out, tx);
    if (ended !== before) parentPort.postMessage({ ended });
  });
  parentPort.on('message', (go) => {
    if (go !== 'go') return;
    ended = 0;
    const out = [];
    const tx = [];
    for (let l = 0; l < lanes; l++) {
      const data = new Float32Array(4);
      out.push({ kind: 'activation', step: 1, mb: 0, replica: 0, node: l, hop: 0,
        tensor: { dtype: 'float32', shape: [1, 4], buffer: data.buffer } });
      tx.push(data.buffer);
    }
    send(out, tx);
  });
});
`;

/** Two plain workers passing `lanes` messages back and forth `hops` times over a direct channel. */
export class RawPingPong {
  private failure: Error | null = null;

  private constructor(
    private readonly workers: Worker[],
    private readonly lanes: number,
  ) {
    for (const w of workers) {
      w.on('error', (err) => {
        this.failure = err;
      });
    }
  }

  static start(lanes: number, hops: number): RawPingPong {
    const { port1, port2 } = new MessageChannel();
    const workers = [0, 1].map(() => new Worker(RAW_WORKER, { eval: true, execArgv: [] }));
    workers[0]!.postMessage({ port: port1, self: 0, lanes, hops }, [port1]);
    workers[1]!.postMessage({ port: port2, self: 1, lanes, hops }, [port2]);
    return new RawPingPong(workers, lanes);
  }

  /** One round: every lane makes all its hops; resolves when the last lane has ended. */
  round(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ended = [0, 0];
      const stop = () => {
        for (const [j, w] of this.workers.entries()) {
          w.off('message', listeners[j]!);
          w.off('error', fail);
        }
      };
      const fail = (err: Error) => {
        stop();
        reject(err);
      };
      const listeners = this.workers.map((w, i) => {
        const on = (m: { ended: number }) => {
          ended[i] = m.ended;
          if (ended[0]! + ended[1]! < this.lanes) return;
          stop();
          resolve();
        };
        w.on('message', on);
        w.on('error', fail);
        return on;
      });
      if (this.failure !== null) fail(this.failure);
      else this.workers[0]!.postMessage('go');
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

// Baselines for `scaling`, measured in the same rounds: what the machine itself gives 2 threads at
// the moment, without the runtime. Each probe worker runs either a scalar loop (about 100 ms, bound
// by latency: it shows how many cores other processes leave us) or 24 of the same 512x512 matmuls
// with the same kernels (bound by the FMA units: two vCPUs that share a physical core halve each
// other here, not in the scalar loop). Once in one worker, then in two at once.
const PROBE = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  const { kernels } = await import(workerData.kernels);
  await import(workerData.defaults);
  const { Rng } = await import(workerData.rng);
  const rng = new Rng(5);
  const a = rng.normalTensor([512, 512]);
  const b = rng.normalTensor([512, 512]);
  parentPort.on('message', (kind) => {
    if (kind === 'matmul') for (let i = 0; i < 24; i++) kernels().matmul(a, b, false, false);
    else {
      let x = 1.0000001;
      let s = 0;
      for (let i = 0; i < 6e7; i++) { s = s * x + 1e-9; x = x * 1.0000000001; }
    }
    parentPort.postMessage('done');
  });
  parentPort.postMessage('ready');
})();
`;

export type ProbeKind = 'scalar' | 'matmul';

/** Two probe workers; `run(kind, n)` runs one probe in each of the first n at once. */
export async function startProbes(): Promise<{
  run: (kind: ProbeKind, n: 1 | 2) => Promise<void>;
  close: () => Promise<void>;
}> {
  const src = (path: string) => new URL(`../../src/${path}`, import.meta.url).href;
  // From source, the probe worker registers tsx itself, as workers/tsx-register.mjs does for the
  // runtime's workers: tsx does not register itself in worker threads on Node 20.
  const workerData = {
    tsx: import.meta.url.endsWith('.ts') ? import.meta.resolve('tsx/esm/api') : null,
    kernels: src('tensor/kernels.ts'),
    defaults: src('tensor/default-kernels.ts'),
    rng: src('tensor/rng.ts'),
  };
  const workers = [0, 1].map(() => new Worker(PROBE, { eval: true, workerData, execArgv: [] }));
  // A failure while no one waits is kept for the next wait.
  let failure: Error | null = null;
  for (const w of workers) {
    w.on('error', (err) => {
      failure = err;
    });
    w.on('exit', (code) => {
      failure ??= new Error(`scaling probe worker exited with code ${code}`);
    });
  }
  // The next message of a worker, or a rejection when it fails or exits first.
  const next = (w: Worker) =>
    new Promise<void>((resolve, reject) => {
      if (failure !== null) {
        reject(failure);
        return;
      }
      const settle = (err?: Error) => {
        w.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onMessage = () => settle();
      const onError = (err: Error) => settle(err);
      const onExit = (code: number) => settle(new Error(`scaling probe worker exited with code ${code}`));
      w.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
  await Promise.all(workers.map(next));
  return {
    run: async (kind, n) => {
      await Promise.all(
        workers.slice(0, n).map((w) => {
          const done = next(w);
          w.postMessage(kind);
          return done;
        }),
      );
    },
    close: async () => {
      for (const w of workers) w.removeAllListeners('exit');
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

// The raw TCP baseline's child process: plain JavaScript (node -e), no runtime. The listener prints
// its port, the other end connects, both print 'ready'. On 'go HOPS' (stdin) the listener sends a
// message of an 8-byte head (hop, hops) and `size` bytes, always the same Buffer; whoever receives a
// whole message sends the next hop back, and the receiver of the last one prints 'done'. Bytes are
// counted as they arrive, never copied: the socket's own speed, the best any wire can do.
const RAW_TCP_CHILD = `
const net = require('node:net');
const [role, port, bytes] = process.argv.slice(1);
const size = Number(bytes);
const payload = Buffer.alloc(size, 7);
const say = (line) => process.stdout.write(line + '\\n');
function serve(socket) {
  socket.setNoDelay(true);
  const head = Buffer.alloc(8);
  let filled = 0, left = 0, hop = 0, hops = 0;
  const send = (h, n) => {
    const next = Buffer.alloc(8);
    next.writeUInt32LE(h, 0);
    next.writeUInt32LE(n, 4);
    socket.cork();
    socket.write(next);
    socket.write(payload);
    socket.uncork();
  };
  socket.on('data', (chunk) => {
    for (let at = 0; at < chunk.length; ) {
      if (filled < 8) {
        const take = Math.min(8 - filled, chunk.length - at);
        chunk.copy(head, filled, at, at + take);
        filled += take;
        at += take;
        if (filled === 8) [hop, hops, left] = [head.readUInt32LE(0), head.readUInt32LE(4), size];
        continue;
      }
      const take = Math.min(left, chunk.length - at);
      left -= take;
      at += take;
      if (left > 0) continue;
      filled = 0;
      if (hop + 1 < hops) send(hop + 1, hops);
      else say('done');
    }
  });
  process.stdin.on('data', (d) => {
    for (const m of String(d).matchAll(/go (\\d+)/g)) send(0, Number(m[1]));
  });
  say('ready');
}
if (role === 'listen') {
  const server = net.createServer((s) => { server.close(); serve(s); });
  server.listen(0, '127.0.0.1', () => say('port ' + server.address().port));
} else {
  const s = net.connect(Number(port), '127.0.0.1', () => serve(s));
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/** A child process of RAW_TCP_CHILD, with the lines it prints handed to whoever waits for them. */
class RawTcpChild {
  private out = '';
  private waiters: { pattern: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void }[] =
    [];
  private failure: Error | null = null;
  readonly exited: Promise<void>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
      for (const w of [...this.waiters]) {
        const m = w.pattern.exec(this.out);
        if (m === null) continue;
        this.out = this.out.slice(m.index + m[0].length);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    this.exited = once(child, 'exit').then(([code, signal]) => {
      this.failure = new Error(`raw TCP baseline: a child exited (${code ?? signal}): ${err}`);
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
    });
  }

  /** The next output matching `pattern` (consumed with everything before it). */
  next(pattern: RegExp): Promise<RegExpExecArray> {
    const m = pattern.exec(this.out);
    if (m !== null) {
      this.out = this.out.slice(m.index + m[0].length);
      return Promise.resolve(m);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ pattern, resolve, reject }));
  }
}

/**
 * Two plain Node processes on a loopback TCP connection passing `bytes`-byte messages back and forth:
 * what the machine's sockets give two processes at the moment, without the runtime.
 */
export class RawTcpPair {
  private constructor(private readonly ends: readonly [RawTcpChild, RawTcpChild]) {}

  static async start(bytes: number): Promise<RawTcpPair> {
    const spawnEnd = (role: string, port: number) =>
      new RawTcpChild(
        spawn(process.execPath, ['-e', RAW_TCP_CHILD, role, String(port), String(bytes)], {
          stdio: ['pipe', 'pipe', 'pipe'],
        }),
      );
    const listener = spawnEnd('listen', 0);
    let other: RawTcpChild | null = null;
    try {
      const [, port] = (await listener.next(/port (\d+)\n/)) as unknown as [string, string];
      other = spawnEnd('connect', Number(port));
      await Promise.all([listener.next(/ready\n/), other.next(/ready\n/)]);
      return new RawTcpPair([listener, other]);
    } catch (err) {
      for (const end of [listener, other]) end?.child.kill('SIGKILL');
      throw err;
    }
  }

  /** One round: `hops` messages, each sent once the previous one has fully arrived. */
  async round(hops: number): Promise<void> {
    const done = Promise.race(this.ends.map((e) => e.next(/done\n/)));
    this.ends[0].child.stdin!.write(`go ${hops}\n`);
    await done;
  }

  async close(): Promise<void> {
    for (const end of this.ends) end.child.stdin!.end();
    await Promise.all(this.ends.map((e) => e.exited));
  }
}
