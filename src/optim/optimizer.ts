import type { Tensor } from '../tensor/tensor.ts';

/**
 * An optimizer as pure per-parameter rules: `init` makes a parameter's state, `update` computes the
 * new value in place of the old one. Being per-parameter and pure, the same rule can run wherever the
 * parameter lives (the main thread, or the worker that owns it).
 */
export interface Optimizer<S = unknown> {
  readonly name: string;
  init(param: Tensor): S;
  /** Updates `param` in place from `grad`; `step` counts from 1. */
  update(param: Tensor, grad: Tensor, state: S, step: number, lr: number): void;
  readonly lr: number;
}

/** Applies an optimizer to a set of named parameters, keeping their states. */
export class OptimizerRun<S = unknown> {
  private readonly states = new Map<string, S>();
  private count = 0;
  constructor(readonly optimizer: Optimizer<S>) {}

  get step(): number {
    return this.count;
  }

  /** One update of every parameter that has a gradient, with the optimizer's rate or `lr`. */
  apply(params: Record<string, Tensor>, grads: Readonly<Record<string, Tensor>>, lr = this.optimizer.lr): void {
    this.count++;
    for (const [name, grad] of Object.entries(grads)) {
      const param = params[name];
      if (param === undefined) continue;
      let state = this.states.get(name);
      if (state === undefined) this.states.set(name, (state = this.optimizer.init(param)));
      this.optimizer.update(param, grad, state, this.count, lr);
    }
  }
}
