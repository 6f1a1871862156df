import { InputError } from '../errors.ts';
import type { Optimizer, OptimizerCheckpoint } from '../optim/optimizer.ts';
import { checkLr, makeOptimizer, type OptimizerSpec, scaled } from '../optim/spec.ts';
import type { LiveBuffers } from '../tensor/pool.ts';
import { cast, type Tensor } from '../tensor/tensor.ts';
import { dict, own } from '../util/names.ts';
import type { ParamActor } from './param-actor.ts';

/**
 * What a host asks of the optimizer of the parameters it owns: their states, the step's closed
 * gradients, and the update. Its engine makes it (`ValueEngine.updates`).
 */
export interface Updates<T> {
  /** Whether gradients stay here for an optimizer (else they are reported). */
  readonly active: boolean;
  set(spec: OptimizerSpec | null): void;
  /** Keeps a parameter's closed gradient for the step's update. */
  keep(node: number, grad: T): void;
  /** Whether every parameter of `params` has its gradient for the step. */
  ready(params: ReadonlyMap<number, unknown>): boolean;
  /** Forgets the step's gradients. */
  clear(): void;
  /** Updates every parameter of `params` and its optimizer state in place (`scale`: the clipping factor). */
  apply(params: ReadonlyMap<number, ParamActor<T>>, lr: number, scale: number): void;
  /** Adds the storages held here (kept gradients, optimizer states) to `live` (Note [step arena]). */
  held(live: LiveBuffers): void;
  /** Bytes of the optimizer state held here. */
  stateBytes(): number;
  /** The optimizer's state of the owned parameters, as copies (for checkpoints). */
  getState(): OptimizerCheckpoint;
  setState(params: ReadonlyMap<number, ParamActor<T>>, checkpoint: OptimizerCheckpoint): void;
}

/** The optimizer of the parameters one host owns, on real tensors. */
export class ParamUpdates implements Updates<Tensor> {
  private optimizer: Optimizer | null = null;
  private readonly states = new Map<number, unknown>();
  private steps = 0;
  private readonly grads = new Map<number, Tensor>();

  constructor(
    private readonly worker: number,
    private readonly nameOf: (id: number) => string,
  ) {}

  get active(): boolean {
    return this.optimizer !== null;
  }

  set(spec: OptimizerSpec | null): void {
    this.optimizer = spec === null ? null : makeOptimizer(spec);
    this.states.clear();
    this.steps = 0;
  }

  keep(node: number, grad: Tensor): void {
    this.grads.set(node, grad);
  }

  ready(params: ReadonlyMap<number, unknown>): boolean {
    for (const id of params.keys()) if (!this.grads.has(id)) return false;
    return true;
  }

  clear(): void {
    this.grads.clear();
  }

  /**
   * The host calls it once `ready` (every gradient is there); the check below only guards that
   * contract, before anything changes. In place, not into shadow copies:
   * the copies cost a pass over every parameter and state per step, and bought nothing, since an
   * update that fails on one host breaks the runtime anyway (Note [deferred update]). A value handed
   * out of the host (in-process `getParam`) must therefore be a copy.
   */
  apply(params: ReadonlyMap<number, ParamActor<Tensor>>, lr: number, scale: number): void {
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
      let state = this.states.get(id);
      if (state === undefined) {
        state = opt.init(param.value);
        this.states.set(id, state);
      }
      opt.update(param.value, scaled(this.grads.get(id)!, scale), state, this.steps + 1, lr);
    }
    this.steps++;
    this.clear();
  }

  held(live: LiveBuffers): void {
    for (const g of this.grads.values()) live.add(g.data);
    const opt = this.optimizer;
    if (opt === null) return;
    for (const state of this.states.values())
      for (const t of Object.values(opt.stateToTensors(state))) live.add(t.data);
  }

  stateBytes(): number {
    const opt = this.optimizer;
    if (opt === null) return 0;
    let bytes = 0;
    for (const state of this.states.values())
      for (const t of Object.values(opt.stateToTensors(state))) bytes += t.bytes;
    return bytes;
  }

  getState(): OptimizerCheckpoint {
    const opt = this.optimizer;
    const states: OptimizerCheckpoint['states'] = dict();
    if (opt !== null) {
      for (const [id, state] of this.states) {
        const copy = dict<Tensor>();
        for (const [k, t] of Object.entries(opt.stateToTensors(state))) copy[k] = cast(t);
        states[this.nameOf(id)] = copy;
      }
    }
    return { name: opt?.name ?? 'none', step: this.steps, states };
  }

  setState(params: ReadonlyMap<number, ParamActor<Tensor>>, checkpoint: OptimizerCheckpoint): void {
    const opt = this.require();
    if (checkpoint.name !== opt.name) {
      throw new InputError(`optimizer state is for '${checkpoint.name}', the runtime uses '${opt.name}'`, {
        expected: opt.name,
        found: checkpoint.name,
      });
    }
    this.states.clear();
    for (const [id, param] of params) {
      const tensors = own(checkpoint.states, this.nameOf(id));
      if (tensors !== undefined) this.states.set(id, opt.stateFromTensors(param.value, tensors));
    }
    this.steps = checkpoint.step;
  }

  private require(): Optimizer {
    if (this.optimizer === null) throw new InputError(`host ${this.worker}: no optimizer is set`);
    return this.optimizer;
  }
}

/** The parameters of a host whose values hold no numbers (the simulator's): no optimizer, ever. */
export class NoUpdates<T> implements Updates<T> {
  readonly active = false;
  constructor(private readonly worker: number) {}

  set(spec: OptimizerSpec | null): void {
    if (spec !== null) throw new InputError(`host ${this.worker}: values without numbers take no optimizer`);
  }
  keep(): void {}
  ready(): boolean {
    return true;
  }
  clear(): void {}
  apply(): void {
    throw new InputError(`host ${this.worker}: no optimizer is set`);
  }
  held(): void {}
  stateBytes(): number {
    return 0;
  }
  getState(): OptimizerCheckpoint {
    return { name: 'none', step: 0, states: {} };
  }
  setState(): void {
    throw new InputError(`host ${this.worker}: no optimizer is set`);
  }
}
