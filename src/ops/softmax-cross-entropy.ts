import { fmtShape, ShapeError } from '../errors.ts';
import { kernels } from '../tensor/kernels.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { allocate, allocateUninit, Tensor } from '../tensor/tensor.ts';
import type { OpDef, TypeInfo, VjpContext } from './op.ts';
import type { Ops } from './ops.ts';
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
  attrs: {},
  infer: (inputs) => {
    const dtype = sameDType('softmaxCrossEntropy', inputs);
    checkLabels('softmaxCrossEntropy', inputs[0]!, inputs[1]!);
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
        total -= l[r * c + classIndex(labels[r]!, r, c, 'softmaxCrossEntropy')]!;
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
    // One op (and one pass) for the logits' gradient: Note [fused cross-entropy gradient].
    const gz = needs[0] ? o.softmaxCrossEntropyGrad(z, t, scale) : null;
    // Class indices are piecewise constant: asked for, their gradient is 0 (as through oneHot in JAX).
    const gt = !needs[1] ? null : rows ? o.mul(o.neg(o.logSoftmax(z, last)), scale) : o.mul(t, 0);
    return [gz, gt];
  },
  flops: ([z]) => numel(z!.shape) * 15,
};

// Note [fused cross-entropy gradient]
// The logits' gradient (softmax(z) * sum(t) - t) * s was six ops (softmax, oneHot, sum, mul, sub,
// mul), each a kernel call, an allocation and a pass over [N, C]. softmaxCrossEntropyGrad is one op:
// the softmax kernel, then one pass that subtracts the target and scales, in float64 rounded once
// per element. Being an op, the reference engine, the runtime and gradGraph all make the same
// nodes, so they still agree bit for bit; its own VJP keeps second derivatives (hvp) working.

/** Labels of shape z's leading dims (class indices) or z's shape (rows), for logits z [..., C]. */
function checkLabels(op: string, z: TypeInfo, t: TypeInfo): void {
  const lead = z.shape.slice(0, -1);
  if (z.shape.length < 1 || !(shapesEqual(t.shape, lead) || shapesEqual(t.shape, z.shape))) {
    throw new ShapeError(
      `${op}: labels have shape ${fmtShape(t.shape)}, expected class indices ${fmtShape(lead)} or rows ${fmtShape(z.shape)} for logits ${fmtShape(z.shape)}`,
      { op, input: 1, expected: [lead, z.shape], found: t.shape },
    );
  }
}

/** Labels' class index of row r, checked (for softmaxCrossEntropy and its gradient). */
function classIndex(k: number, r: number, c: number, op: string): number {
  if (!Number.isInteger(k) || k < 0 || k >= c) {
    throw new ShapeError(`${op}: label ${k} at row ${r} is not a class index in [0, ${c})`, {
      op,
      input: 1,
      expected: `[0, ${c})`,
      found: k,
    });
  }
  return k;
}

/**
 * (softmax(z) * sum(t) - t) * s over the last axis of z [..., C]: the gradient of softmaxCrossEntropy
 * with respect to its logits, `s` its scalar scale (the cotangent over the batch size). Labels as in
 * softmaxCrossEntropy: class indices [...] (sum(t) is 1 and t is their one-hot rows) or rows [..., C].
 */
export const softmaxCrossEntropyGrad: OpDef = {
  name: 'softmaxCrossEntropyGrad',
  arity: 3,
  saves: { inputs: 'all', output: false },
  attrs: {},
  infer: (inputs) => {
    const [z, t, s] = [inputs[0]!, inputs[1]!, inputs[2]!];
    const dtype = sameDType('softmaxCrossEntropyGrad', inputs);
    checkLabels('softmaxCrossEntropyGrad', z, t);
    if (s.shape.length !== 0) {
      throw new ShapeError(
        `softmaxCrossEntropyGrad: the scale must be a scalar, found ${fmtShape(s.shape)}`,
        {
          op: 'softmaxCrossEntropyGrad',
          input: 2,
          expected: [],
          found: s.shape,
        },
      );
    }
    return { shape: z.shape, dtype };
  },
  forward: ([z, t, s]) => {
    const p = kernels().softmax(z!, z!.rank - 1);
    const c = z!.shape[z!.rank - 1]!;
    const n = c === 0 ? 0 : p.size / c;
    const scale = s!.data[0]!;
    const labels = t!.data;
    const out = allocateUninit(z!.dtype, p.size);
    const q = p.data;
    if (t!.rank === z!.rank) {
      for (let r = 0; r < n; r++) {
        let total = 0;
        for (let j = 0; j < c; j++) total += labels[r * c + j]!;
        for (let j = r * c; j < (r + 1) * c; j++) out[j] = (q[j]! * total - labels[j]!) * scale;
      }
    } else {
      for (let r = 0; r < n; r++) {
        const k = r * c + classIndex(labels[r]!, r, c, 'softmaxCrossEntropyGrad');
        for (let j = r * c; j < (r + 1) * c; j++) out[j] = (q[j]! - (j === k ? 1 : 0)) * scale;
      }
    }
    return new Tensor(z!.dtype, z!.shape, out);
  },
  // With p = softmax(z), S = sum(t) (1 for indices), T the target rows and v the cotangent:
  // dz = s * S * (p * v - p * sum(p * v)), dt = s * (sum(p * v) - v) for rows, ds = sum((p * S - T) * v).
  vjp: <T>(o: Ops<T>, { g, input, needs, inputShapes, dtype }: VjpContext<T>) => {
    const [z, t, s] = [input(0), input(1), input(2)];
    const zShape = inputShapes[0]!;
    const last = zShape.length - 1;
    const rows = inputShapes[1]!.length === zShape.length;
    const p = o.softmax(z, last);
    const pv = o.sum(o.mul(p, g), last, true);
    const total = rows ? o.sum(t, last, true) : null;
    let gz: T | null = null;
    if (needs[0]) {
      gz = o.mul(o.sub(o.mul(p, g), o.mul(p, pv)), s);
      if (total !== null) gz = o.mul(gz, total);
    }
    const gt = !needs[1] ? null : rows ? o.mul(o.sub(pv, g), s) : o.mul(t, 0);
    const target = rows ? t : o.oneHot(t, zShape[last] as number, dtype);
    const gs = needs[2] ? o.sum(o.mul(o.sub(total === null ? p : o.mul(p, total), target), g)) : null;
    return [gz, gt, gs];
  },
  flops: ([z]) => numel(z!.shape) * 14,
};
