import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { allocate, Tensor } from '../tensor/tensor.ts';
import type { OpDef } from './op.ts';
import { numel, sameDType } from './rules.ts';

/**
 * Fused softmax cross-entropy over the last axis of logits [..., C], averaged over all leading
 * positions (the batch). Labels are class indices [...] holding integer values, or rows [..., C]
 * (one-hot or probabilities). The backward is (softmax(z) * sum(t) - t) * g / N for the logits and,
 * for label rows, -logSoftmax(z) * g / N.
 */
export const softmaxCrossEntropy: OpDef = {
  name: 'softmaxCrossEntropy',
  arity: 2,
  saves: { inputs: 'all', output: false },
  infer: (inputs) => {
    const [z, t] = [inputs[0]!, inputs[1]!];
    const dtype = sameDType('softmaxCrossEntropy', inputs);
    const lead = z.shape.slice(0, -1);
    if (z.shape.length < 1 || !(shapesEqual(t.shape, lead) || shapesEqual(t.shape, z.shape))) {
      throw new ShapeError(
        `softmaxCrossEntropy: labels have shape ${fmtShape(t.shape)}, expected class indices ${fmtShape(lead)} or rows ${fmtShape(z.shape)} for logits ${fmtShape(z.shape)}`,
        { op: 'softmaxCrossEntropy', input: 1, expected: [lead, z.shape], found: t.shape },
      );
    }
    return { shape: [], dtype };
  },
  forward: ([z, t]) => {
    const lsm = kernels().logSoftmax(z!, z!.rank - 1);
    const c = z!.shape[z!.rank - 1]!;
    const n = lsm.size / c;
    const l = lsm.data;
    const labels = t!.data;
    let total = 0;
    if (t!.rank === z!.rank) {
      for (let i = 0; i < l.length; i++) if (labels[i] !== 0) total -= labels[i]! * l[i]!;
    } else {
      for (let r = 0; r < n; r++) {
        const k = labels[r]!;
        if (!Number.isInteger(k) || k < 0 || k >= c) {
          throw new ShapeError(
            `softmaxCrossEntropy: label ${k} at row ${r} is not a class index in [0, ${c})`,
            {
              op: 'softmaxCrossEntropy',
              input: 1,
              expected: `[0, ${c})`,
              found: k,
            },
          );
        }
        total -= l[r * c + k]!;
      }
    }
    const out = allocate(z!.dtype, 1);
    out[0] = total / n;
    return new Tensor(z!.dtype, [], out);
  },
  vjp: (o, { g, input, needs, inputShapes, dtype }) => {
    const z = input(0);
    const t = input(1);
    const zShape = inputShapes[0]!;
    const rows = inputShapes[1]!.length === zShape.length;
    const last = zShape.length - 1;
    const scale = o.div(g, o.count(zShape, [...Array(last).keys()], dtype));
    const target = rows ? t : o.oneHot(t, zShape[last] as number, dtype);
    const p = o.softmax(z, last);
    const gz = needs[0] ? o.mul(o.sub(rows ? o.mul(p, o.sum(t, last, true)) : p, target), scale) : null;
    // Class indices are piecewise constant: asked for, their gradient is 0 (as through oneHot in JAX).
    const gt = !needs[1] ? null : rows ? o.mul(o.neg(o.logSoftmax(z, last)), scale) : o.mul(t, 0);
    return [gz, gt];
  },
  flops: ([z]) => numel(z!.shape) * 15,
};
