import type { Tensor } from '../tensor/tensor.ts';
import { float64Tensors, type Optimizer, readStateArray } from './optimizer.ts';

/** SGD's hyperparameters, as PyTorch's. */
export interface SgdOptions {
  /** The learning rate (default 0.01). */
  lr?: number;
  /** The momentum (default 0: none). */
  momentum?: number;
  /** PyTorch's dampening of the gradient in the momentum buffer (not applied on the first step). */
  dampening?: number;
  /** Nesterov momentum (default false). */
  nesterov?: boolean;
  /** L2 added to the gradient (default 0). */
  weightDecay?: number;
}

export interface SgdState {
  velocity: Float64Array<ArrayBuffer> | null;
  /** Whether the velocity holds a value yet (PyTorch starts the buffer at the first gradient). */
  started: boolean;
}

/**
 * SGD with optional momentum, Nesterov momentum and (coupled) weight decay, as PyTorch defines them:
 * g = grad + wd * w; v = g on the first step, then v = momentum * v + (1 - dampening) * g;
 * step = nesterov ? g + momentum * v : v; w -= lr * step.
 */
export function sgd(options: SgdOptions = {}): Optimizer<SgdState> {
  const momentum = options.momentum ?? 0;
  const dampening = options.dampening ?? 0;
  const nesterov = options.nesterov ?? false;
  const wd = options.weightDecay ?? 0;
  return {
    name: 'sgd',
    lr: options.lr ?? 0.01,
    config: { momentum, dampening, nesterov, weightDecay: wd },
    init: (p) => ({ velocity: momentum > 0 ? new Float64Array(p.size) : null, started: false }),
    update(param: Tensor, grad: Tensor, state, _step, lr) {
      const w = param.data;
      const g = grad.data;
      const v = state.velocity;
      const first = !state.started;
      state.started = true;
      // Without weight decay d is g itself (g + 0 * w would make a NaN of an infinite weight's step).
      // The loops are split by configuration so none tests it per element, and the plain one is
      // unrolled: for 235k float32 parameters, plain SGD 0.165 ms against 0.27 for the general loop.
      if (v === null) {
        if (wd === 0) plainStep(w, g, lr);
        else for (let i = 0; i < w.length; i++) w[i] = w[i]! - lr * (g[i]! + wd * w[i]!);
        return;
      }
      const keep = 1 - dampening;
      for (let i = 0; i < w.length; i++) {
        const d = wd === 0 ? g[i]! : g[i]! + wd * w[i]!;
        const vi = first ? d : momentum * v[i]! + keep * d;
        v[i] = vi;
        w[i] = w[i]! - lr * (nesterov ? d + momentum * vi : vi);
      }
    },
    stateToTensors: (state) =>
      state.velocity && state.started ? float64Tensors({ velocity: state.velocity }) : {},
    stateFromTensors: (param, tensors) =>
      momentum > 0 && tensors['velocity'] !== undefined
        ? { velocity: readStateArray('sgd', param, tensors, 'velocity'), started: true }
        : { velocity: momentum > 0 ? new Float64Array(param.size) : null, started: false },
  };
}

/** w -= lr * g, four elements a turn (each computed as the general loop does). */
function plainStep(w: Float32Array | Float64Array, g: Float32Array | Float64Array, lr: number): void {
  const n = w.length - (w.length % 4);
  let i = 0;
  for (; i < n; i += 4) {
    w[i] = w[i]! - lr * g[i]!;
    w[i + 1] = w[i + 1]! - lr * g[i + 1]!;
    w[i + 2] = w[i + 2]! - lr * g[i + 2]!;
    w[i + 3] = w[i + 3]! - lr * g[i + 3]!;
  }
  for (; i < w.length; i++) w[i] = w[i]! - lr * g[i]!;
}
