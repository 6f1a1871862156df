import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { adam, adamw } from '../../src/optim/adam.ts';
import { type Optimizer, OptimizerRun } from '../../src/optim/optimizer.ts';
import { sgd } from '../../src/optim/sgd.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { cast, type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise, expectRowsClose } from '../support/expect.ts';

const f64 = (values: number[]) => tensor(values, { dtype: 'float64' });

/** Runs `steps` updates of one parameter; `gradOf(w, t)` gives the gradient at update t (from 1). */
function run<S>(
  opt: Optimizer<S>,
  w0: number[],
  steps: number,
  gradOf: (w: number[], t: number) => number[],
  lr = opt.lr,
) {
  const w = f64(w0);
  const state = opt.init(w);
  const seen: number[][] = [];
  for (let t = 1; t <= steps; t++) {
    opt.update(w, f64(gradOf([...w.data], t)), state, t, lr);
    seen.push([...w.data]);
  }
  return seen;
}

// Closed forms, worked out by hand for a 2-element parameter over 3 steps.
describe('closed-form update sequences', () => {
  const w0 = [1, -2];
  const g = [0.5, -0.25]; // a constant gradient

  it('sgd on f(w) = w^2 / 2 (gradient w): w_t = (1 - lr)^t w0', () => {
    const seen = run(sgd({ lr: 0.1 }), w0, 3, (w) => w);
    expectRowsClose(seen, [
      [0.9, -1.8],
      [0.81, -1.62],
      [0.729, -1.458],
    ]);
  });

  it('sgd with weight decay 0.5 on the same f: w_t = (1 - lr (1 + wd))^t w0 = 0.85^t w0', () => {
    const seen = run(sgd({ lr: 0.1, weightDecay: 0.5 }), w0, 3, (w) => w);
    expectRowsClose(seen, [
      [0.85, -1.7],
      [0.7225, -1.445],
      [0.614125, -1.22825],
    ]);
  });

  it('momentum 0.9, constant g: v = g, 1.9 g, 2.71 g; w_t = w0 - lr g (1, 2.9, 5.61)', () => {
    const seen = run(sgd({ lr: 0.1, momentum: 0.9 }), w0, 3, () => g);
    expectRowsClose(seen, [
      [1 - 0.05, -2 + 0.025],
      [1 - 0.145, -2 + 0.0725],
      [1 - 0.2805, -2 + 0.14025],
    ]);
  });

  it('Nesterov 0.9, constant g: steps g (1.9, 2.71, 3.439); w_t = w0 - lr g (1.9, 4.61, 8.049)', () => {
    const seen = run(sgd({ lr: 0.1, momentum: 0.9, nesterov: true }), w0, 3, () => g);
    expectRowsClose(seen, [
      [1 - 0.095, -2 + 0.0475],
      [1 - 0.2305, -2 + 0.11525],
      [1 - 0.40245, -2 + 0.201225],
    ]);
  });

  it('momentum 0.5 with dampening 0.5, constant g: v = g (first step undamped), g, g', () => {
    // v1 = g; v2 = 0.5 g + 0.5 g = g; v3 = g.
    const seen = run(sgd({ lr: 0.1, momentum: 0.5, dampening: 0.5 }), w0, 3, () => g);
    expectRowsClose(seen, [
      [0.95, -1.975],
      [0.9, -1.95],
      [0.85, -1.925],
    ]);
  });

  it('adam, constant g: the bias-corrected moments are exactly g and g^2, so each step is lr g / (|g| + eps)', () => {
    const eps = 1e-8;
    const seen = run(adam({ lr: 0.1, eps }), w0, 3, () => g);
    const s0 = (0.1 * 0.5) / (0.5 + eps);
    const s1 = (0.1 * 0.25) / (0.25 + eps);
    expectRowsClose(seen, [
      [1 - s0, -2 + s1],
      [1 - 2 * s0, -2 + 2 * s1],
      [1 - 3 * s0, -2 + 3 * s1],
    ]);
  });

  it('adamw 0.1 decay, constant g: w_t = w_{t-1} (1 - lr wd) - lr g / (|g| + eps)', () => {
    const eps = 1e-8;
    const seen = run(adamw({ lr: 0.1, eps, weightDecay: 0.1 }), w0, 3, () => g);
    const s0 = (0.1 * 0.5) / (0.5 + eps);
    const s1 = (0.1 * 0.25) / (0.25 + eps);
    const a = [1 * 0.99 - s0, -2 * 0.99 + s1];
    const b = [a[0]! * 0.99 - s0, a[1]! * 0.99 + s1];
    const c = [b[0]! * 0.99 - s0, b[1]! * 0.99 + s1];
    expectRowsClose(seen, [a, b, c]);
    expect(c[0]).toBeCloseTo(0.99 ** 3 - s0 * (1 + 0.99 + 0.99 ** 2), 14);
  });

  it('adam with gradients (1, -2), (-1, 2), (2, -4), written out (beta1 0.5, beta2 0.75, eps 0)', () => {
    // Element 0, gradients 1, -1, 2:
    // t=1: m=0.5, v=0.25; mhat=0.5/0.5=1, vhat=0.25/0.25=1; w = 1 - 0.1 = 0.9
    // t=2: m=0.25-0.5=-0.25, v=0.1875+0.25=0.4375; mhat=-0.25/0.75=-1/3, vhat=0.4375/0.4375=1; w = 0.9 + 0.1/3
    // t=3: m=-0.125+1=0.875, v=0.328125+1=1.328125; mhat=0.875/0.875=1, vhat=1.328125/0.578125
    //      w = 0.9 + 0.1/3 - 0.1 / sqrt(1.328125 / 0.578125)
    // Element 1 has gradients -2 times those: with eps 0 Adam is scale invariant, so it moves by the
    // same amounts in the opposite direction.
    const seen = run(adam({ lr: 0.1, beta1: 0.5, beta2: 0.75, eps: 0 }), [1, 0], 3, (_w, t) => {
      const g = [1, -1, 2][t - 1]!;
      return [g, -2 * g];
    });
    const d3 = 0.1 / Math.sqrt(1.328125 / 0.578125);
    expectRowsClose(seen, [
      [0.9, 0.1],
      [0.9 + 0.1 / 3, 0.1 - 0.1 / 3],
      [0.9 + 0.1 / 3 - d3, 0.1 - 0.1 / 3 + d3],
    ]);
  });
});

// Independent implementations of the update rules as PyTorch documents them (the algorithm boxes of
// torch.optim.SGD, Adam and AdamW), in float64, one element at a time.
function torchSgd(o: { lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number }) {
  let b: number | null = null;
  return (theta: number, grad: number) => {
    let g = grad;
    if (o.wd !== 0) g = g + o.wd * theta;
    if (o.momentum !== 0) {
      b = b === null ? g : o.momentum * b + (1 - o.dampening) * g;
      g = o.nesterov ? g + o.momentum * b : b;
    }
    return theta - o.lr * g;
  };
}

function torchAdam(o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean }) {
  let [m, v, t] = [0, 0, 0];
  return (theta: number, grad: number) => {
    t++;
    let g = grad;
    let th = theta;
    if (o.decoupled) th = th - o.lr * o.wd * th;
    else if (o.wd !== 0) g = g + o.wd * th;
    m = o.b1 * m + (1 - o.b1) * g;
    v = o.b2 * v + (1 - o.b2) * g * g;
    const mHat = m / (1 - o.b1 ** t);
    const vHat = v / (1 - o.b2 ** t);
    return th - (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
  };
}

describe('against the documented PyTorch update equations (random gradients, 20 steps)', () => {
  const cases: [string, Optimizer<unknown>, () => (theta: number, grad: number) => number][] = [];
  for (const nesterov of [false, true])
    for (const wd of [0, 0.05])
      for (const [momentum, dampening] of [
        [0, 0],
        [0.9, 0],
        [0.8, 0.3],
      ] as const) {
        if (nesterov && (momentum === 0 || dampening !== 0)) continue; // PyTorch rejects these
        const o = { lr: 0.05, momentum, dampening, nesterov, wd };
        cases.push([
          `sgd ${JSON.stringify(o)}`,
          sgd({ lr: o.lr, momentum, dampening, nesterov, weightDecay: wd }) as Optimizer<unknown>,
          () => torchSgd(o),
        ]);
      }
  for (const decoupled of [false, true])
    for (const wd of [0, 0.1]) {
      const o = { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd, decoupled };
      const options = { lr: o.lr, beta1: o.b1, beta2: o.b2, eps: o.eps, weightDecay: wd };
      cases.push([
        `${decoupled ? 'adamw' : 'adam'} ${JSON.stringify(o)}`,
        (decoupled ? adamw : adam)(options) as Optimizer<unknown>,
        () => torchAdam(o),
      ]);
    }

  it.each(cases)('%s', (_name, opt, reference) => {
    const rng = new Rng(11);
    const n = 5;
    const w = f64(Array.from({ length: n }, () => rng.normal()));
    const refs = Array.from({ length: n }, reference);
    const expected = [...w.data];
    const state = opt.init(w);
    for (let t = 1; t <= 20; t++) {
      const grad = Array.from({ length: n }, () => rng.normal());
      opt.update(w, f64(grad), state, t, opt.lr);
      for (let i = 0; i < n; i++) expected[i] = refs[i]!(expected[i]!, grad[i]!);
      for (let i = 0; i < n; i++) expect(w.data[i]).toBeCloseTo(expected[i]!, 12);
    }
  });

  it('coupled and decoupled weight decay differ, and agree when the decay is 0', () => {
    const grads = (_w: number[], t: number) => [t, -t];
    const coupled = run(adam({ lr: 0.1, weightDecay: 0.1 }), [1, 2], 3, grads);
    const decoupled = run(adamw({ lr: 0.1, weightDecay: 0.1 }), [1, 2], 3, grads);
    expect(coupled[2]![0]).not.toBeCloseTo(decoupled[2]![0]!, 6);
    expect(run(adam({ lr: 0.1 }), [1, 2], 3, grads)).toEqual(
      run(adamw({ lr: 0.1, weightDecay: 0 }), [1, 2], 3, grads),
    );
  });
});

describe('OptimizerRun state for checkpoints', () => {
  const optimizers: [string, () => Optimizer<unknown>][] = [
    ['sgd', () => sgd({ lr: 0.1 }) as Optimizer<unknown>],
    [
      'sgd nesterov',
      () => sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 }) as Optimizer<unknown>,
    ],
    ['adam', () => adam({ lr: 0.01 }) as Optimizer<unknown>],
    ['adamw', () => adamw({ lr: 0.01 }) as Optimizer<unknown>],
  ];

  function setup() {
    const rng = new Rng(3);
    const params: Record<string, Tensor> = {
      a: rng.normalTensor([3, 2]),
      b: rng.normalTensor([4], 0, 1, 'float64'),
    };
    const gradsAt = (t: number) => {
      const r = new Rng(100 + t);
      return { a: r.normalTensor([3, 2]), b: r.normalTensor([4], 0, 1, 'float64') };
    };
    return { params, gradsAt };
  }

  it.each(optimizers)(
    '%s: 3 steps, checkpoint, restore into a new run, 3 steps = 6 steps in one go (bitwise)',
    (_n, make) => {
      const one = setup();
      const straight = new OptimizerRun(make());
      for (let t = 1; t <= 6; t++) straight.apply(one.params, one.gradsAt(t));

      const two = setup();
      const first = new OptimizerRun(make());
      for (let t = 1; t <= 3; t++) first.apply(two.params, two.gradsAt(t));
      const saved = first.toCheckpoint();
      const savedParams = { a: cast(two.params.a!), b: cast(two.params.b!) };
      first.apply(two.params, two.gradsAt(99)); // later updates must not change the saved copy

      const resumed = new OptimizerRun(make());
      resumed.restore(saved, savedParams);
      expect(resumed.step).toBe(3);
      for (let t = 4; t <= 6; t++) resumed.apply(savedParams, two.gradsAt(t));
      for (const name of ['a', 'b']) expectBitwise(savedParams[name as 'a']!, one.params[name]!);
      const end = resumed.toCheckpoint();
      const ref = straight.toCheckpoint();
      expect(Object.keys(end.states)).toEqual(Object.keys(ref.states));
      for (const [name, tensors] of Object.entries(ref.states))
        for (const [key, t] of Object.entries(tensors)) expectBitwise(end.states[name]![key]!, t);
    },
  );

  it('restore rejects another optimizer, an unknown parameter and a state of the wrong size', () => {
    const { params, gradsAt } = setup();
    const run1 = new OptimizerRun(adam());
    run1.apply(params, gradsAt(1));
    const saved = run1.toCheckpoint();
    expect(() => new OptimizerRun(sgd()).restore(saved, params)).toThrow(
      /checkpoint is for optimizer 'adam'/,
    );
    expect(() => new OptimizerRun(adam()).restore(saved, { a: params.a! })).toThrow(InputError);
    expect(() => new OptimizerRun(adam()).restore(saved, { a: params.a!, b: f64([1, 2]) })).toThrow(
      /'m' has 4 elements, the parameter 2/,
    );
  });

  it('uses a schedule when no rate is given', () => {
    const w = { w: f64([0]) };
    const r = new OptimizerRun(sgd(), { schedule: (t) => t });
    for (let t = 1; t <= 3; t++) r.apply(w, { w: f64([1]) });
    expect(w.w.data[0]).toBe(-6);
    expect(r.lrAt(10)).toBe(10);
  });
});
