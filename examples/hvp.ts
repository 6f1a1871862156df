// Hessian-vector products by differentiating twice (gradGraph of gradGraph), checked against
// central differences of gradients, then used for a few steps of power iteration.
//
//   npx tsx examples/hvp.ts
//
// H v = d/dt grad(theta + t v) at t = 0 ~ (grad(theta + eps v) - grad(theta - eps v)) / (2 eps).
// The loss is a small two-layer classifier in float64: softmaxCrossEntropy(tanh(x W1 + b1) W2, y).
import {
  cast,
  GraphBuilder,
  hvp,
  initParams,
  Rng,
  type Tensor,
  type TensorMap,
  tensor,
  valueAndGrad,
} from 'backflow-runtime';

const b = new GraphBuilder();
const x = b.input('x', ['B', 4], 'float64');
const y = b.input('y', ['B'], 'float64');
const h = b.tanh(
  b.add(b.matmul(x, b.param('W1', [4, 6], { dtype: 'float64' })), b.param('b1', [6], { dtype: 'float64' })),
);
b.output('loss', b.softmaxCrossEntropy(b.matmul(h, b.param('W2', [6, 3], { dtype: 'float64' })), y));
const graph = b.build();

const rng = new Rng(7);
const params = initParams(graph, 7);
const batch = 16;
const feeds = {
  x: rng.uniformTensor([batch, 4], -2, 2, 'float64'),
  y: tensor(
    Array.from({ length: batch }, () => rng.int(3)),
    { dtype: 'float64' },
  ),
};
const names = Object.keys(params);

/** theta + s v, parameter by parameter. */
function moved(theta: TensorMap, v: TensorMap, s: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of names) {
    const t = cast(theta[name]!);
    const dv = v[name]!.data;
    for (let i = 0; i < t.size; i++) t.data[i] = t.data[i]! + s * dv[i]!;
    out[name] = t;
  }
  return out;
}

const grad = valueAndGrad(graph, { loss: 'loss' });
const hessianTimes = hvp(graph, { loss: 'loss' });

console.log(`loss = ${grad(feeds, params).value.item().toFixed(6)}; parameters ${names.join(', ')}\n`);
console.log('H v by hvp against central differences of gradients (eps = 1e-5), three random v:');
const eps = 1e-5;
for (let trial = 0; trial < 3; trial++) {
  const v = Object.fromEntries(names.map((n) => [n, rng.uniformTensor(params[n]!.shape, -1, 1, 'float64')]));
  const exact = hessianTimes(feeds, params, v);
  const plus = grad(feeds, moved(params, v, eps)).grads;
  const minus = grad(feeds, moved(params, v, -eps)).grads;
  let worst = 0;
  let scale = 0;
  for (const name of names) {
    for (let i = 0; i < exact[name]!.size; i++) {
      const fd = (plus[name]!.data[i]! - minus[name]!.data[i]!) / (2 * eps);
      worst = Math.max(worst, Math.abs(exact[name]!.data[i]! - fd));
      scale = Math.max(scale, Math.abs(fd));
    }
  }
  console.log(
    `  v #${trial + 1}: max |hvp - finite difference| = ${worst.toExponential(2)} (largest entry ${scale.toFixed(4)})`,
  );
  if (!(worst <= 1e-6 * Math.max(1, scale))) throw new Error('hvp: disagrees with finite differences');
}

// Power iteration: the largest-magnitude eigenvalue of H, with H never formed.
/** The inner product of two parameter-shaped vectors. */
function dot(u: TensorMap, w: TensorMap): number {
  let sum = 0;
  for (const name of names) {
    const [a, c] = [u[name]!.data, w[name]!.data];
    for (let i = 0; i < a.length; i++) sum += a[i]! * c[i]!;
  }
  return sum;
}

console.log('\nPower iteration on H (never formed; one hvp per step):');
let v: TensorMap = Object.fromEntries(
  names.map((n) => [n, rng.uniformTensor(params[n]!.shape, -1, 1, 'float64')]),
);
for (let step = 1; step <= 30; step++) {
  v = moved(v, v, 1 / Math.sqrt(dot(v, v)) - 1); // v / |v|
  const hv = hessianTimes(feeds, params, v);
  const eigenvalue = dot(v, hv); // the Rayleigh quotient, |v| = 1
  v = hv;
  if (step % 10 === 0) console.log(`  step ${step}: lambda ~ ${eigenvalue.toFixed(6)}`);
}
