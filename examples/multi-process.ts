// Training across processes: starts a local nats-server (or uses --nats URL), spawns two node
// processes (`backflow node`), and trains the MNIST MLP data-parallel across them, one replica on
// each, with the optimizer on the nodes. Before training, it checks that the first step's loss and
// gradients on the node processes equal the single-process run's bit for bit.
//
//   npx tsx examples/multi-process.ts [--nats nats://HOST:4222] [--data tcp|nats] [--epochs 3]
//
// On several machines, run `backflow node --nats nats://HOST:4222 --cluster mnist` on each and point
// this script (or `backflow train --nats ... --nodes N`) at the same server: see the README.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  createRuntime,
  initParams,
  loadMnist,
  mlpClassifier,
  type NatsServer,
  referenceStep,
  startNatsServer,
  Trainer,
  trainingSummary,
} from 'backflow-runtime';

const { values } = parseArgs({
  options: {
    nats: { type: 'string' },
    data: { type: 'string', default: 'tcp' },
    epochs: { type: 'string', default: '3' },
  },
});
const data = values.data === 'nats' ? 'nats' : 'tcp';
// The `backflow` command of the installed package (from source, its bin runs src/cli/main.ts).
const manifest = fileURLToPath(import.meta.resolve('backflow-runtime/package.json'));
const { bin } = JSON.parse(readFileSync(manifest, 'utf8')) as { bin: { backflow: string } };
const CLI = join(dirname(manifest), bin.backflow);
const cluster = `mnist-${process.pid}`;

let server: NatsServer | null = null;
const nodes: ChildProcess[] = [];
try {
  server = values.nats === undefined ? await startNatsServer() : null;
  const url = values.nats ?? server!.url;
  console.log(`NATS at ${url}${server ? ' (a local nats-server started for this run)' : ''}`);
  for (const name of ['node-a', 'node-b']) {
    const child = spawn(
      process.execPath,
      [CLI, 'node', '--nats', url, '--cluster', cluster, '--name', name, '--listen', '127.0.0.1'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    nodes.push(child);
    // Its log, prefixed; and on to the next once it has joined.
    let joined!: () => void;
    const ready = new Promise<void>((resolve) => (joined = resolve));
    child.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        console.log(`  [${name}] ${line}`);
        if (line.includes('joined cluster')) joined();
      }
    });
    await Promise.race([
      ready,
      once(child, 'exit').then(([code]) => Promise.reject(new Error(`${name} exited (${code})`))),
    ]);
  }

  const { train, test } = loadMnist({ train: 8000, test: 2000, seed: 0 });
  const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
  const params = initParams(graph, 1);
  const options = { workers: 2, replicas: 2 };
  const clusterOption = { nats: url, name: cluster, nodes: 2, data } as const;

  // The first step, on the nodes and in this process (the reference engine): bit for bit.
  const batch = train.subset(Array.from({ length: 128 }, (_, i) => i));
  const feeds = { x: batch.x, y: batch.y };
  const runtime = await createRuntime(graph, { ...options, params, cluster: clusterOption });
  const [remote, local] = await Promise.all([
    runtime.step(feeds).finally(() => runtime.close()),
    Promise.resolve(referenceStep(graph, feeds, params, { replicas: 2, microbatches: 1 })),
  ]);
  const same =
    remote.loss === local.loss &&
    Object.entries(local.grads).every(([name, g]) => {
      const r = remote.grads[name]!;
      const a = new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength);
      const b = new Uint8Array(g.data.buffer, g.data.byteOffset, g.data.byteLength);
      return a.length === b.length && a.every((x, i) => x === b[i]);
    });
  console.log(
    `first step on 2 node processes (data over ${data}): loss ${remote.loss}, ${Object.keys(local.grads).length} gradients ` +
      (same ? 'bitwise equal to the single-process run' : 'DIFFERENT from the single-process run'),
  );
  if (!same) process.exitCode = 1;

  // Training: the Trainer on the same nodes, Adam running where the parameters live.
  const trainer = new Trainer(graph, {
    ...options,
    params,
    optimizer: { name: 'adam', lr: 1e-3 },
    cluster: clusterOption,
  });
  try {
    const history = await trainer.fit(train, {
      epochs: Number(values.epochs),
      batchSize: 128,
      evalData: test,
    });
    const { samplesPerSec, accuracy } = trainingSummary(history);
    console.log(`\n${trainer.lossChart(60, 6)}\n`);
    console.log(`test accuracy   ${(accuracy! * 100).toFixed(2)}%`);
    console.log(`throughput      ${Math.round(samplesPerSec)} samples/s across 2 node processes`);
  } finally {
    await trainer.close();
  }
} finally {
  for (const child of nodes) child.kill('SIGTERM');
  await Promise.all(nodes.map((c) => (c.exitCode === null ? once(c, 'exit') : null)));
  await server?.stop();
}
