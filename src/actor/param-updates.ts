import { InputError } from '../errors.ts';
import type { Optimizer, OptimizerCheckpoint } from '../optim/optimizer.ts';
import { checkLr, makeOptimizer, type OptimizerSpec, scaled } from '../optim/spec.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ValueEngine } from './engine.ts';
import type { ParamActor } from './param-actor.ts';

/**
 * The optimizer of the parameters one host owns: their states, the step's closed gradients, and the
 * update. Real tensors only: the simulator never sets an optimizer.
 */
export class ParamUpdates<T> {
  private optimizer: Optimizer | null = null;
  private readonly states = new Map<number, unknown>();
  private steps = 0;
  private readonly grads = new Map<number, T>();

  constructor(
    private readonly worker: number,
    private readonly engine: ValueEngine<T>,
    private readonly nameOf: (id: number) => string,
  ) {}

  /** Whether gradients stay here for an optimizer (else they are reported). */
  get active(): boolean {
    return this.optimizer !== null;
  }

  set(spec: OptimizerSpec | null): void {
    this.optimizer = spec === null ? null : makeOptimizer(spec);
    this.states.clear();
    this.steps = 0;
  }

  /** Keeps a parameter's closed gradient for the step's update. */
  keep(node: number, grad: T): void {
    this.grads.set(node, grad);
  }

  /** Whether every parameter of `params` has its gradient for the step. */
  ready(params: ReadonlyMap<number, unknown>): boolean {
    for (const id of params.keys()) if (!this.grads.has(id)) return false;
    return true;
  }

  /** Forgets the step's gradients. */
  clear(): void {
    this.grads.clear();
  }

  /**
   * Updates every owned parameter and its optimizer state in place (`scale` is the clipping factor).
   * The host calls it once `ready` (every gradient is there); the check below only guards that
   * contract, before anything changes. In place, not into shadow copies:
   * the copies cost a pass over every parameter and state per step, and bought nothing, since an
   * update that fails on one host breaks the runtime anyway (Note [deferred update]). A value handed
   * out of the host (in-process `getParam`) must therefore be a copy.
   */
  apply(params: ReadonlyMap<number, ParamActor<T>>, lr: number, scale: number): void {
    const opt = this.require();
    // The coordinator checks the rate too: this guards the parameters against any other sender.
    checkLr(lr, `host ${this.worker}: update`);
    for (const id of params.keys()) {
      if (!this.grads.has(id)) {
        throw new InputError(
          `host ${this.worker}: parameter ${this.nameOf(id)} has no gradient for this step`,
          { node: this.nameOf(id) },
        );
      }
    }
    for (const [id, param] of params) {
      const value = param.value as unknown as Tensor;
      let state = this.states.get(id);
      if (state === undefined) {
        state = opt.init(value);
        this.states.set(id, state);
      }
      opt.update(value, scaled(this.grads.get(id) as unknown as Tensor, scale), state, this.steps + 1, lr);
    }
    this.steps++;
    this.clear();
  }

  /** Calls `f` on every value held here: kept gradients and optimizer states. */
  held(f: (value: T) => void): void {
    for (const g of this.grads.values()) f(g);
    const opt = this.optimizer;
    if (opt === null) return;
    for (const state of this.states.values())
      for (const t of Object.values(opt.stateToTensors(state))) f(t as unknown as T);
  }

  /** Bytes of the optimizer state held here. */
  stateBytes(): number {
    const opt = this.optimizer;
    if (opt === null) return 0;
    let bytes = 0;
    for (const state of this.states.values())
      for (const t of Object.values(opt.stateToTensors(state))) bytes += t.bytes;
    return bytes;
  }

  /** The optimizer's state of the owned parameters, as copies (for checkpoints). */
  getState(): OptimizerCheckpoint {
    const opt = this.optimizer;
    const states: OptimizerCheckpoint['states'] = {};
    if (opt !== null) {
      for (const [id, state] of this.states) {
        const copy: Record<string, Tensor> = {};
        for (const [k, t] of Object.entries(opt.stateToTensors(state)))
          copy[k] = this.engine.copy(t as unknown as T) as unknown as Tensor;
        states[this.nameOf(id)] = copy;
      }
    }
    return { name: opt?.name ?? 'none', step: this.steps, states };
  }

  setState(params: ReadonlyMap<number, ParamActor<T>>, checkpoint: OptimizerCheckpoint): void {
    const opt = this.require();
    if (checkpoint.name !== opt.name) {
      throw new InputError(`optimizer state is for '${checkpoint.name}', the runtime uses '${opt.name}'`, {
        expected: opt.name,
        found: checkpoint.name,
      });
    }
    this.states.clear();
    for (const [id, param] of params) {
      const tensors = checkpoint.states[this.nameOf(id)];
      if (tensors !== undefined)
        this.states.set(id, opt.stateFromTensors(param.value as unknown as Tensor, tensors));
    }
    this.steps = checkpoint.step;
  }

  private require(): Optimizer {
    if (this.optimizer === null) throw new InputError(`host ${this.worker}: no optimizer is set`);
    return this.optimizer;
  }
}
