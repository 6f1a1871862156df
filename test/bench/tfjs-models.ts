/**
 * The `models` suite's baselines: the same LeNet-5 and the same causal transformer written in
 * TensorFlow.js 4.22 ops, on its WebAssembly backend (wasm files from node_modules, no network), in
 * this thread, starting from the very parameters backflow starts from (copied by name).
 *
 * Note [tfjs-wasm gaps]
 * The wasm backend of tfjs 4.22 registers no `Conv2DBackpropFilter` and no `UnsortedSegmentSum`
 * kernel, so the stock gradients of `conv2d` (for the filter) and of `gather` throw there. The
 * baselines go around them with what the backend does have, the same math:
 * - conv2d is a `customGrad` whose filter gradient is itself a convolution, of the image with the
 *   batch as its channels by the output gradient as the filter (stride 1:
 *   dW[p,q,c,f] = sum over n,i,j of xpad[n,i+p,j+q,c] dy[n,i,j,f]), on the backend's conv kernel,
 *   and so is the image's gradient (the filter turned, over dy padded: it gives the same values as
 *   `conv2dTranspose`, whose Conv2DBackpropInput kernel took 1.7x to 2.7x as long here), skipped
 *   for the data, as backflow skips it;
 * - the token embedding is oneHot(tokens) @ table, whose gradient is a matmul.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import type { Tensor } from '../../src/tensor/tensor.ts';

type Tf = typeof TF;

/** A batch of one of the models: x and y as backflow takes them. */
export interface Feeds {
  x: Tensor;
  y: Tensor;
}

/** One training step of tfjs on a batch, returning the loss before the update. */
export interface TfjsEngine {
  simd: boolean;
  threads: boolean;
  step: (feeds: Feeds) => number;
  close: () => void;
}

let loaded: Promise<Tf> | null = null;

/** tfjs on its wasm backend, loaded once (the runner imports every suite, and tfjs takes a while to load). */
export function tfjsWasm(): Promise<Tf> {
  loaded ??= (async () => {
    // The umbrella package registers the gradients `minimize` needs (tfjs-core alone has none).
    const tf = await import('@tensorflow/tfjs');
    const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
    const wasm = createRequire(import.meta.url).resolve(
      '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm',
    );
    setWasmPaths(`${dirname(wasm)}/`);
    if (!(await tf.setBackend('wasm'))) throw new Error('models bench: the tfjs wasm backend did not start');
    await tf.ready();
    return tf;
  })();
  return loaded;
}

/** The optimizers both sides run, with the same hyperparameters. */
export type OptimizerChoice = { name: 'sgd'; lr: number } | { name: 'adam'; lr: number; eps: number };

/**
 * An engine training `loss(vars, x, y)` by `optimizer.minimize` on tfjs variables holding copies of
 * backflow's initial parameters; `toTf` turns a batch into the tensors the loss reads (cached per batch).
 */
function engine(
  tf: Tf,
  params: Record<string, Tensor>,
  choice: OptimizerChoice,
  toTf: (f: Feeds) => { x: TF.Tensor; y: TF.Tensor },
  loss: (p: (name: string) => TF.Variable, x: TF.Tensor, y: TF.Tensor) => TF.Scalar,
): TfjsEngine {
  const vars = new Map(
    Object.entries(params).map(([name, t]) => [
      name,
      tf.variable(tf.tensor(t.data as Float32Array, [...t.shape], 'float32'), true, `bench/${name}`),
    ]),
  );
  const p = (name: string) => {
    const v = vars.get(name);
    if (v === undefined) throw new Error(`models bench: tfjs model reads an unknown parameter ${name}`);
    return v;
  };
  const optimizer =
    choice.name === 'sgd' ? tf.train.sgd(choice.lr) : tf.train.adam(choice.lr, 0.9, 0.999, choice.eps);
  const data = new Map<Feeds, { x: TF.Tensor; y: TF.Tensor }>();
  return {
    simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT') as boolean,
    threads: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') as boolean,
    step: (feeds) => {
      let d = data.get(feeds);
      if (d === undefined) {
        d = toTf(feeds);
        data.set(feeds, d);
      }
      const { x, y } = d;
      const cost = optimizer.minimize(() => loss(p, x, y), true)!;
      // Reading the loss waits for the step, as backflow's step waits for its loss.
      const value = cost.dataSync()[0]!;
      cost.dispose();
      return value;
    },
    close: () => {
      for (const d of data.values()) tf.dispose([d.x, d.y]);
      tf.dispose([...vars.values()]);
      optimizer.dispose();
    },
  };
}

/** conv2d with stride 1 and `pad` zeros on each side, its gradients on the wasm backend's kernels (Note [tfjs-wasm gaps]). */
function conv(tf: Tf, x: TF.Tensor4D, w: TF.Tensor4D, pad: number, inputGrad: boolean): TF.Tensor4D {
  const f = tf.customGrad((...args: unknown[]) => {
    const [xi, wi, save] = args as [TF.Tensor4D, TF.Tensor4D, TF.GradSaveFunc];
    save([xi, wi]);
    return {
      value: tf.conv2d(xi, wi, 1, pad),
      gradFunc: (dy: TF.Tensor | TF.Tensor[], saved: TF.Tensor[]) => {
        const g = dy as TF.Tensor4D;
        const [xs, ws] = saved as [TF.Tensor4D, TF.Tensor4D];
        // [N, H, W, C] as [C, H, W, N] by g [N, OH, OW, F] as [OH, OW, N, F]: [C, KH, KW, F].
        const dw = tf.conv2d(
          tf.transpose(xs, [3, 1, 2, 0]) as TF.Tensor4D,
          tf.transpose(g, [1, 2, 0, 3]) as TF.Tensor4D,
          1,
          pad,
        );
        // The filter turned by 180 degrees with its channels and filters swapped, over g padded by
        // KH - 1 - pad: the image's gradient, on the forward kernel.
        const turned = tf.transpose(tf.reverse(ws, [0, 1]), [0, 1, 3, 2]) as TF.Tensor4D;
        const dx = inputGrad ? tf.conv2d(g, turned, 1, ws.shape[0] - 1 - pad) : tf.zerosLike(xs);
        return [dx, tf.transpose(dw, [1, 2, 0, 3])];
      },
    };
  });
  return f(x, w) as TF.Tensor4D;
}

/**
 * LeNet-5 as the suite builds it: conv 5x5x6 pad 2, relu, maxpool 2, conv 5x5x16, relu, maxpool 2,
 * flatten, dense 120 relu, dense 84 relu, dense 10, softmax cross-entropy (mean) against class indices.
 */
export function tfjsLenet(
  tf: Tf,
  params: Record<string, Tensor>,
  choice: OptimizerChoice,
  classes: number,
): TfjsEngine {
  return engine(
    tf,
    params,
    choice,
    ({ x, y }) => ({
      x: tf.tensor4d(x.data as Float32Array, x.shape as [number, number, number, number]),
      y: tf.oneHot(tf.tensor1d(y.data as Float32Array, 'int32'), classes),
    }),
    (p, x, y) => {
      const pool = (h: TF.Tensor4D) => tf.maxPool(h, 2, 2, 'valid');
      let h = tf.relu(
        tf.add(conv(tf, x as TF.Tensor4D, p('conv1.w') as TF.Tensor4D, 2, false), p('conv1.b')),
      );
      h = pool(h as TF.Tensor4D);
      h = tf.relu(tf.add(conv(tf, h as TF.Tensor4D, p('conv2.w') as TF.Tensor4D, 0, true), p('conv2.b')));
      let z: TF.Tensor = tf.reshape(pool(h as TF.Tensor4D), [x.shape[0]!, -1]);
      for (const [i, name] of ['fc1', 'fc2', 'fc3'].entries()) {
        z = tf.add(tf.matMul(z as TF.Tensor2D, p(`${name}.w`) as TF.Tensor2D), p(`${name}.b`));
        if (i < 2) z = tf.relu(z);
      }
      return tf.losses.softmaxCrossEntropy(y, z) as TF.Scalar;
    },
  );
}

/** The transformer's sizes, as the suite builds it. */
export interface TransformerShape {
  vocab: number;
  length: number;
  dim: number;
  heads: number;
  layers: number;
}

/**
 * The causal transformer as backflow's nn helpers build it: token and learned position embeddings,
 * pre-norm blocks (layerNorm, causal multi-head attention with biased q/k/v/o projections, residual;
 * layerNorm, dense 4 dim exact-GELU, dense dim, residual), a final layerNorm, a dense head over the
 * vocabulary, and softmax cross-entropy averaged over every position (next-token loss).
 */
export function tfjsTransformer(
  tf: Tf,
  params: Record<string, Tensor>,
  choice: OptimizerChoice,
  s: TransformerShape,
): TfjsEngine {
  const { vocab, length, dim, heads, layers } = s;
  const head = dim / heads;
  // backflow's causalBias: -1e9 above the diagonal (a constant, outside any gradient).
  const bias = tf.tensor2d(
    Array.from({ length: length * length }, (_, i) => (i % length > Math.floor(i / length) ? -1e9 : 0)),
    [length, length],
  );
  const flat = (t: Tensor) => tf.tensor1d(t.data as Float32Array, 'int32');
  const base = engine(
    tf,
    params,
    choice,
    ({ x, y }) => ({ x: tf.oneHot(flat(x), vocab), y: tf.oneHot(flat(y), vocab) }),
    (p, x, y) => {
      const rows = x.shape[0]!;
      const batch = rows / length;
      // Activations are [B*T, dim] between the attention's matmuls.
      const dense = (h: TF.Tensor, name: string) =>
        tf.add(tf.matMul(h as TF.Tensor2D, p(`${name}.w`) as TF.Tensor2D), p(`${name}.b`));
      const norm = (h: TF.Tensor, name: string) => {
        const centered = tf.sub(h, tf.mean(h, -1, true));
        const variance = tf.mean(tf.square(centered), -1, true);
        const n = tf.div(centered, tf.sqrt(tf.add(variance, 1e-5)));
        return tf.add(tf.mul(n, p(`${name}.g`)), p(`${name}.b`));
      };
      const split = (h: TF.Tensor) => tf.transpose(tf.reshape(h, [batch, length, heads, head]), [0, 2, 1, 3]);
      const attention = (h: TF.Tensor, name: string) => {
        const [q, k, v] = ['q', 'k', 'v'].map((w) => split(dense(h, `${name}.${w}`)));
        const scores = tf.add(tf.mul(tf.matMul(q!, k!, false, true), 1 / Math.sqrt(head)), bias);
        const joined = tf.transpose(tf.matMul(tf.softmax(scores, -1), v!), [0, 2, 1, 3]);
        return dense(tf.reshape(joined, [rows, dim]), `${name}.o`);
      };
      const gelu = (h: TF.Tensor) => tf.mul(h, tf.mul(tf.add(tf.erf(tf.mul(h, Math.SQRT1_2)), 1), 0.5));
      let h: TF.Tensor = tf.matMul(x as TF.Tensor2D, p('tokens.table') as TF.Tensor2D);
      h = tf.reshape(tf.add(tf.reshape(h, [batch, length, dim]), p('positions.table')), [rows, dim]);
      for (let i = 0; i < layers; i++) {
        const name = `block${i}`;
        h = tf.add(h, attention(norm(h, `${name}.ln1`), `${name}.attn`));
        h = tf.add(h, dense(gelu(dense(norm(h, `${name}.ln2`), `${name}.mlp.0`)), `${name}.mlp.1`));
      }
      const logits = dense(norm(h, 'norm'), 'head');
      return tf.losses.softmaxCrossEntropy(y, logits) as TF.Scalar;
    },
  );
  return {
    ...base,
    close: () => {
      base.close();
      bias.dispose();
    },
  };
}
