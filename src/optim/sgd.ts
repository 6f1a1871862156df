import type { Tensor } from '../tensor/tensor.ts';
import type { Optimizer } from './optimizer.ts';

export interface SgdOptions {
  lr?: number;
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

/**
 * SGD with optional momentum, Nesterov momentum and (coupled) weight decay, as PyTorch defines them:
 * g = grad + wd * w; v = momentum * v + g; step = nesterov ? g + momentum * v : v; w -= lr * step.
 */
export function sgd(options: SgdOptions = {}): Optimizer<{ velocity: Float64Array | null }> {
  const momentum = options.momentum ?? 0;
  const nesterov = options.nesterov ?? false;
  const wd = options.weightDecay ?? 0;
  return {
    name: 'sgd',
    lr: options.lr ?? 0.01,
    init: (p) => ({ velocity: momentum > 0 ? new Float64Array(p.size) : null }),
    update(param: Tensor, grad: Tensor, state, _step, lr) {
      const w = param.data;
      const g = grad.data;
      const v = state.velocity;
      for (let i = 0; i < w.length; i++) {
        let d = g[i]! + wd * w[i]!;
        if (v !== null) {
          v[i] = momentum * v[i]! + d;
          d = nesterov ? d + momentum * v[i]! : v[i]!;
        }
        w[i] = w[i]! - lr * d;
      }
    },
  };
}
