/**
 * A floor for the `actors` suite's `overhead` case: the same step (the MNIST MLP's forward and
 * backward, the gradients to the caller) on one plain worker thread with no runtime. The worker runs
 * the reference engine's `valueAndGrad`; a step posts the feeds to it (cloned: copied, as the runtime
 * copies them), and the worker posts back the loss, the gradients' sum of squares (the step result's
 * norm, which the runtime's hosts compute too) and the gradients, their buffers transferred. So a
 * step holds the compute, two thread hops and the copies any worker design pays, and nothing of the
 * runtime: the case's target against this floor says how much room the runtime has.
 *
 * The worker runs an esbuild bundle of this file, as the runtime's workers from source run one of
 * theirs (Note [source workers] in src/runtime/source-worker.ts): the same code in the same form, so
 * the two compare.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { valueAndGrad } from '../../src/autodiff/engine.ts';
import type { TensorMap } from '../../src/autodiff/forward.ts';
import { initParams } from '../../src/graph/params.ts';
import { sumOfSquares } from '../../src/optim/spec.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { mlpClassifier } from '../../src/train/models.ts';

interface FloorConfig {
  engineFloor: true;
  features: number;
  hidden: number[];
  classes: number;
  seed: number;
}

interface FloorFeed {
  name: string;
  shape: number[];
  data: Float32Array;
}

if (!isMainThread && (workerData as Partial<FloorConfig> | null)?.engineFloor === true) floorWorker();

function floorWorker(): void {
  const config = workerData as FloorConfig;
  const graph = mlpClassifier({ features: config.features, hidden: config.hidden, classes: config.classes });
  const params = initParams(graph, config.seed);
  const step = valueAndGrad(graph, { loss: 'loss', onWarning: () => {} });
  parentPort!.on('message', (feeds: FloorFeed[]) => {
    const map: Record<string, Tensor> = {};
    for (const f of feeds) map[f.name] = new Tensor('float32', f.shape, f.data as Float32Array<ArrayBuffer>);
    const { value, grads } = step(map, params);
    let sumsq = 0;
    for (const g of Object.values(grads)) sumsq += sumOfSquares(g);
    const buffers = Object.values(grads).map((g) => g.data.buffer as ArrayBuffer);
    parentPort!.postMessage({ loss: value.data[0], sumsq, grads: buffers }, buffers);
  });
}

/** One plain worker running the reference engine's step on the feeds it is posted. */
export class EngineFloor {
  private constructor(
    private readonly worker: Worker,
    private readonly dir: string,
  ) {}

  /** Bundles this file, starts its worker on the MLP of `config` (parameters from `seed`). */
  static async start(config: Omit<FloorConfig, 'engineFloor'>): Promise<EngineFloor> {
    const esbuild = await import('esbuild');
    const dir = mkdtempSync(join(tmpdir(), 'backflow-floor-'));
    const file = join(dir, 'engine-floor.mjs');
    const result = await esbuild.build({
      entryPoints: [fileURLToPath(import.meta.url)],
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      write: false,
      logLevel: 'silent',
    });
    writeFileSync(file, result.outputFiles[0]!.text);
    const worker = new Worker(file, { workerData: { engineFloor: true, ...config } satisfies FloorConfig });
    return new EngineFloor(worker, dir);
  }

  /** One step on `feeds` (float32 tensors): resolves with the loss once the gradients are back. */
  step(feeds: TensorMap): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (m: { loss: number }) => {
        this.worker.off('error', reject);
        resolve(m.loss);
      };
      this.worker.once('message', done);
      this.worker.once('error', reject);
      this.worker.postMessage(
        Object.entries(feeds).map(([name, t]) => ({
          name,
          shape: [...t.shape],
          data: t.data as Float32Array,
        })),
      );
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
