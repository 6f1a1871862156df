// The main job (`npm start`): trains an MLP (784-256-128-10) on MNIST digits, data-parallel across 2
// worker threads (one replica each, the optimizer running on the workers that own the parameters),
// with a progress bar; then prints the test accuracy, the throughput and where the loss curve went.
import { writeFileSync } from 'node:fs';
import {
  initParams,
  loadMnist,
  mlpClassifier,
  Trainer,
  trainingSummary,
  workerBytesLines,
} from 'backflow-runtime';

const started = performance.now();
const { train, test } = loadMnist({ train: 8000, test: 2000, seed: 0 });
const graph = mlpClassifier({ features: 784, hidden: [256, 128], classes: 10 });
const epochs = 6;
console.log(`backflow: MLP 784-256-128-10 on MNIST (${train.size} training and ${test.size} test digits)`);
console.log('2 worker threads, data-parallel: 2 replicas, batch 128, Adam on the workers\n');

const trainer = new Trainer(graph, {
  workers: 2,
  replicas: 2,
  params: initParams(graph, 1),
  optimizer: { name: 'adam', lr: 1e-3 },
});
try {
  const history = await trainer.fit(train, { epochs, batchSize: 128, evalData: test });
  const { samplesPerSec, accuracy } = trainingSummary(history);
  const curve = 'loss-curve.svg';
  writeFileSync(curve, trainer.lossCurveSvg('backflow: MNIST MLP training loss'));
  console.log(`\ntraining loss per step\n${trainer.lossChart(60, 8)}\n`);
  console.log(`test accuracy   ${(accuracy! * 100).toFixed(2)}%`);
  console.log(`throughput      ${Math.round(samplesPerSec)} samples/s (training steps only)`);
  console.log(`total time      ${((performance.now() - started) / 1000).toFixed(1)} s`);
  console.log(`loss curve      ${curve}`);
  // Tensor bytes per worker: what each holds between steps, and what its last step moved.
  for (const line of workerBytesLines(await (await trainer.start()).stats())) console.log(line);
} finally {
  await trainer.close();
}
