import type { Tensor } from '../tensor/tensor.ts';
import { float64Tensors, type Optimizer, readStateArray } from './optimizer.ts';

export interface SgdOptions {
  lr?: number;
  momentum?: number;
  /** PyTorch's dampening of the gradient in the momentum buffer (not applied on the first step). */
  dampening?: number;
  nesterov?: boolean;
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
      if (v === null && wd === 0) {
        // Plain SGD: the loop below without its dead terms (d is g itself; g + 0 * w would make a
        // NaN of an infinite weight's step): 0.23 ms against 0.27 for 235k float32 parameters.
        for (let i = 0; i < w.length; i++) w[i] = w[i]! - lr * g[i]!;
        return;
      }
      for (let i = 0; i < w.length; i++) {
        let d = g[i]! + wd * w[i]!;
        if (v !== null) {
          v[i] = first ? d : momentum * v[i]! + (1 - dampening) * d;
          d = nesterov ? d + momentum * v[i]! : v[i]!;
        }
        w[i] = w[i]! - lr * d;
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
