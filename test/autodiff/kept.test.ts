// Small values valueAndGrad keeps for its backward are kept as their bits (Note [kept values] in
// src/autodiff/kept.ts): the gradients are gradGraph's bit for bit (its evaluation keeps tensors), and
// peakBytes counts them as it counts tensors.
import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { type DType, type Tensor, tensor } from '../../src/tensor/tensor.ts';

const bits = (t: Tensor) => Array.from(new Uint32Array(t.data.buffer));

/**
 * The sum over k < n of tanh(a) * a with a = w + k / n: the mul keeps a and tanh(a), tanh keeps its
 * output, and every level's term reaches the gradient of w undamped.
 */
function levels(n: number, width: number, dtype: DType) {
  const b = new GraphBuilder();
  const w = b.param('w', [width], { dtype });
  let s = w;
  for (let k = 0; k < n; k++) {
    const a = b.add(w, b.constant(k / n, dtype));
    s = b.add(s, b.mul(b.tanh(a), a));
  }
  b.output('loss', b.sum(s));
  return b.build();
}

describe('kept values', () => {
  it('gradients are gradGraph bit for bit, over chunk boundaries, in float32 and float64', () => {
    // 9000 levels of f32[8] keep 144k elements: three chunks of 65536.
    for (const [n, dtype] of [
      [9000, 'float32'],
      [300, 'float64'],
    ] as const) {
      const graph = levels(n, 8, dtype);
      const w = tensor([0.5, -0.25, 0, -0, 1e-40, 3, -2, Number.NaN], { dtype });
      const result = valueAndGrad(graph, { loss: 'loss' })({}, { w });
      const out = evaluate(gradGraph(graph, { loss: 'loss' }), {}, { w });
      expect(bits(result.grads['w']!)).toEqual(bits(out['grad:w']!));
      expect(bits(result.value)).toEqual(bits(out['loss']!));
    }
  });

  it('peakBytes counts a kept value from its forward to its last VJP, as it counts a tensor', () => {
    // A chain of tanh on f32[4]: every output is held until the backward (16 bytes each).
    const n = 100;
    const b = new GraphBuilder();
    let x = b.param('w', [4]);
    for (let k = 0; k < n; k++) x = b.tanh(x);
    b.output('loss', b.sum(x));
    const { peakBytes } = valueAndGrad(b.build(), { loss: 'loss' })({}, { w: tensor([1, 2, 3, 4]) });
    expect(peakBytes).toBeGreaterThanOrEqual((n + 1) * 16);
    expect(peakBytes).toBeLessThanOrEqual((n + 2) * 16 + 3 * 4);
  });
});
