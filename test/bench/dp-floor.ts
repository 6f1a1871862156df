/**
 * `npx tsx test/bench/dp-floor.ts [--steps N] [--rounds N]`
 *
 * A floor for the `train` suite's data-parallel step: the same MNIST MLP step (784-256-128-10, batch
 * 128, SGD) done by hand on raw worker threads, with no runtime. Each worker runs the reference
 * engine's `valueAndGrad` on its shard (the same kernels the hosts run), and then:
 *
 * - `1-worker`: reports the loss and the gradients' sum of squares to the main thread, and applies SGD;
 * - `2-workers`: posts every gradient to the other worker (buffers transferred), sums the two in
 *   replica order when the other's arrive, reports, and applies SGD to its own copy (replicated);
 * - `compute-only` cases report as soon as the compute is done: what the threads' compute scales by,
 *   with the start and the report as the only hops.
 *
 * The main thread plays the coordinator: it posts each step's start with the shard's feeds, waits for
 * every report, and starts the next step. So a step holds the compute and three thread hops (start,
 * gradients, report), no more. `exchange-only` cases skip the compute (fixed gradients), which leaves
 * the hops, the sums and the update. The engines take turns in rounds; figures are medians of ms per
 * step and the median of per-round ratios. Not a test: figures only.
 */
import {
  isMainThread,
  MessageChannel,
  type MessagePort,
  parentPort,
  Worker,
  workerData,
} from 'node:worker_threads';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import { initParams } from '../../src/graph/params.ts';
import { EagerOps } from '../../src/ops/eager.ts';
import { sumOfSquares } from '../../src/optim/spec.ts';
import { scalar, Tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';
import { median } from './harness.ts';

const HIDDEN = [256, 128];
const eager = new EagerOps();
const add = (a: Tensor, b: Tensor) => eager.add(a, b);
const LR = 0.1;

interface Start {
  step: number;
  x: ArrayBuffer;
  y: ArrayBuffer;
  rows: number;
  scale: number;
  compute: boolean;
  /** False: report at once after the compute (no exchange, no sum, no update): compute and two hops. */
  exchange: boolean;
}

if (!isMainThread) worker();

function worker(): void {
  const { index, replicas } = workerData as { index: number; replicas: number };
  const graph = mlpClassifier({ features: 784, hidden: HIDDEN, classes: 10 });
  const step = valueAndGrad(graph, { loss: graph.nodes.at(-1)!.id });
  const params = initParams(graph, 1);
  const names = Object.keys(params);
  let coordinator: MessagePort;
  let peer: MessagePort | null = null;
  let mine: Record<string, Tensor> | null = null;
  let theirs: ArrayBuffer[] | null = null;
  let loss = 0;
  const fixed = names.map((n) => new Float32Array(params[n]!.data.length).fill(1e-3));
  const finish = () => {
    let total = mine!;
    if (replicas > 1) {
      const other = Object.fromEntries(
        names.map((n, i) => [n, new Tensor('float32', [...params[n]!.shape], new Float32Array(theirs![i]!))]),
      );
      // Replica order: replica 0's gradient first.
      total = Object.fromEntries(
        names.map((n) => [n, index === 0 ? add(mine![n]!, other[n]!) : add(other[n]!, mine![n]!)]),
      );
    }
    let sumsq = 0;
    for (const n of names) sumsq += sumOfSquares(total[n]!);
    coordinator.postMessage({ loss, sumsq });
    // SGD on this worker's copy, off the coordinator's path.
    for (const n of names) {
      const p = params[n]!.data as Float32Array;
      const g = total[n]!.data as Float32Array;
      for (let i = 0; i < p.length; i++) p[i]! -= LR * g[i]!;
    }
    mine = null;
    theirs = null;
  };
  parentPort!.once('message', (ports: { coordinator: MessagePort; peer: MessagePort | null }) => {
    coordinator = ports.coordinator;
    peer = ports.peer;
    peer?.on('message', (buffers: ArrayBuffer[]) => {
      theirs = buffers;
      if (mine !== null) finish();
    });
    coordinator.on('message', (s: Start) => {
      if (s.compute) {
        const x = new Tensor('float32', [s.rows, 784], new Float32Array(s.x));
        const y = new Tensor('float32', [s.rows], new Float32Array(s.y));
        const r = step({ x, y }, params, { seed: scalar(s.scale) });
        loss = r.value.data[0]!;
        mine = r.grads;
      } else {
        loss = 0;
        mine = Object.fromEntries(
          names.map((n, i) => [n, new Tensor('float32', [...params[n]!.shape], fixed[i]!.slice())]),
        );
      }
      if (!s.exchange) {
        coordinator.postMessage({ loss, sumsq: 0 });
        mine = null;
        return;
      }
      if (peer !== null) {
        const copies = names.map((n) => (mine![n]!.data as Float32Array).slice().buffer);
        peer.postMessage(copies, copies);
      }
      if (replicas === 1 || theirs !== null) finish();
    });
  });
}

/** A cluster of raw workers: one per replica. */
class Raw {
  private constructor(
    private readonly workers: Worker[],
    private readonly ports: MessagePort[],
  ) {}

  static async start(replicas: number): Promise<Raw> {
    const register = new URL('../../workers/tsx-register.mjs', import.meta.url);
    const workers = Array.from(
      { length: replicas },
      (_, index) =>
        new Worker(new URL(import.meta.url), {
          workerData: { index, replicas },
          execArgv: ['--import', register.href],
        }),
    );
    const coordinators = workers.map(() => new MessageChannel());
    const peers = replicas > 1 ? new MessageChannel() : null;
    workers.forEach((w, i) => {
      const peer = peers === null ? null : i === 0 ? peers.port1 : peers.port2;
      const list = peer === null ? [coordinators[i]!.port2] : [coordinators[i]!.port2, peer];
      w.postMessage({ coordinator: coordinators[i]!.port2, peer }, list);
    });
    return new Raw(
      workers,
      coordinators.map((c) => c.port1),
    );
  }

  /** One step on `x` (rows x 784) and `y`: resolves when every worker has reported. */
  step(step: number, x: Float32Array, y: Float32Array, compute: boolean, exchange: boolean): Promise<void> {
    const n = this.workers.length;
    const rows = y.length / n;
    return new Promise((resolve) => {
      let left = n;
      this.ports.forEach((port, i) => {
        port.once('message', () => {
          if (--left === 0) resolve();
        });
        const xs = x.slice(i * rows * 784, (i + 1) * rows * 784);
        const ys = y.slice(i * rows, (i + 1) * rows);
        port.postMessage(
          { step, x: xs.buffer, y: ys.buffer, rows, scale: 1 / n, compute, exchange } satisfies Start,
          [xs.buffer, ys.buffer],
        );
      });
    });
  }

  async close(): Promise<void> {
    for (const p of this.ports) p.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

if (isMainThread) {
  const argv = process.argv.slice(2);
  const flag = (name: string, fallback: number) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? fallback : Number(argv[i + 1]);
  };
  const steps = flag('steps', 100);
  const rounds = flag('rounds', 5);
  const { mnistBatches } = await import('./suites/train.ts');
  const batches = mnistBatches(16);
  const one = await Raw.start(1);
  const two = await Raw.start(2);
  try {
    const cases: [string, Raw, boolean, boolean][] = [
      ['1-worker', one, true, true],
      ['2-workers', two, true, true],
      ['1-worker compute-only', one, true, false],
      ['2-workers compute-only', two, true, false],
      ['1-worker exchange-only', one, false, true],
      ['2-workers exchange-only', two, false, true],
    ];
    const samples = new Map(cases.map(([name]) => [name, [] as number[]]));
    const perRound = new Map(cases.map(([name]) => [name, [] as number[]]));
    let k = 0;
    for (let round = 0; round <= rounds; round++) {
      for (const [name, raw, compute, exchange] of cases) {
        const times: number[] = [];
        for (let i = 0; i < steps; i++, k++) {
          const b = batches[k % batches.length]!;
          const t = performance.now();
          await raw.step(k, b.x.data as Float32Array, b.y.data as Float32Array, compute, exchange);
          times.push(performance.now() - t);
        }
        // Round 0 warms up.
        if (round === 0) continue;
        samples.get(name)!.push(...times);
        perRound.get(name)!.push(median(times));
      }
    }
    for (const [name] of cases)
      console.log(`${name.padEnd(24)} ${median(samples.get(name)!).toFixed(3)} ms per step`);
    const ratio = (a: string, b: string) =>
      median(perRound.get(a)!.map((x, i) => x / perRound.get(b)![i]!)).toFixed(2);
    console.log(`2 workers vs 1, the whole step: ${ratio('1-worker', '2-workers')}x`);
    console.log(`2 workers vs 1, compute only: ${ratio('1-worker compute-only', '2-workers compute-only')}x`);
  } finally {
    await Promise.all([one.close(), two.close()]);
  }
}
