import type { Tensor } from '../tensor/tensor.ts';
import { float64Tensors, type Optimizer, readStateArray } from './optimizer.ts';

/** Adam's and AdamW's hyperparameters, with PyTorch's defaults. */
export interface AdamOptions {
  /** The learning rate (default 0.001). */
  lr?: number;
  /** The first moment's decay (default 0.9). */
  beta1?: number;
  /** The second moment's decay (default 0.999). */
  beta2?: number;
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Adam: L2 added to the gradient (default 0). AdamW: decoupled decay of the weights (default 0.01). */
  weightDecay?: number;
}

export interface AdamState {
  m: Float64Array<ArrayBuffer>;
  v: Float64Array<ArrayBuffer>;
}

/**
 * Adam and AdamW in the order of operations of PyTorch's single-tensor implementation:
 * AdamW first decays w *= 1 - lr * wd (Adam instead adds wd * w to the gradient); then
 * m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, and w -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
function adamLike(name: string, decoupled: boolean, options: AdamOptions): Optimizer<AdamState> {
  const b1 = options.beta1 ?? 0.9;
  const b2 = options.beta2 ?? 0.999;
  const eps = options.eps ?? 1e-8;
  const wd = options.weightDecay ?? (decoupled ? 0.01 : 0);
  return {
    name,
    lr: options.lr ?? 0.001,
    config: { beta1: b1, beta2: b2, eps, weightDecay: wd },
    init: (p) => ({ m: new Float64Array(p.size), v: new Float64Array(p.size) }),
    update(param: Tensor, grad: Tensor, { m, v }, step, lr) {
      const w = param.data;
      const g = grad.data;
      const stepSize = lr / (1 - b1 ** step);
      const c2 = Math.sqrt(1 - b2 ** step);
      // Hoisted and split by configuration, each loop without tests per element; the same roundings
      // as the loop written out (1 - b1 and the decay factor are the same numbers computed once). As
      // in PyTorch, no decay term is added when the decay is 0.
      const k1 = 1 - b1;
      const k2 = 1 - b2;
      if (decoupled || wd === 0) {
        const decay = decoupled ? 1 - lr * wd : 1;
        for (let i = 0; i < w.length; i++) {
          const wi = w[i]! * decay; // decay is 1 for Adam: w * 1 is w
          const gi = g[i]!;
          const mi = b1 * m[i]! + k1 * gi;
          const vi = b2 * v[i]! + k2 * gi * gi;
          m[i] = mi;
          v[i] = vi;
          w[i] = wi - (stepSize * mi) / (Math.sqrt(vi) / c2 + eps);
        }
        return;
      }
      for (let i = 0; i < w.length; i++) {
        const wi = w[i]!;
        const gi = g[i]! + wd * wi;
        const mi = b1 * m[i]! + k1 * gi;
        const vi = b2 * v[i]! + k2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - (stepSize * mi) / (Math.sqrt(vi) / c2 + eps);
      }
    },
    stateToTensors: ({ m, v }) => float64Tensors({ m, v }),
    stateFromTensors: (param, tensors) => ({
      m: readStateArray(name, param, tensors, 'm'),
      v: readStateArray(name, param, tensors, 'v'),
    }),
  };
}

/** Adam (Kingma and Ba), with optional L2 weight decay added to the gradient. */
export const adam = (options: AdamOptions = {}) => adamLike('adam', false, options);
/** AdamW (Loshchilov and Hutter): weight decay applied to the weights, decoupled from the gradient. */
export const adamw = (options: AdamOptions = {}) => adamLike('adamw', true, options);
