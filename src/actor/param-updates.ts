import { InputError } from '../errors.ts';
import type { Optimizer, OptimizerCheckpoint } from '../optim/optimizer.ts';
import { makeOptimizer, type OptimizerSpec, scaled } from '../optim/spec.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ValueEngine } from './engine.ts';
import type { ParamActor } from './param-actor.ts';

/**
 * The optimizer of the parameters one host owns: their states, the step's closed gradients, and the
 * two-phase update (prepare into shadows, then commit by swapping them in). Real tensors only: the
 * simulator never sets an optimizer.
 */
export class ParamUpdates<T> {
  private optimizer: Optimizer | null = null;
  private readonly states = new Map<number, unknown>();
  private steps = 0;
  private readonly grads = new Map<number, T>();
  private shadow: Map<number, { value: T; state: unknown }> | null = null;

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

  /** Forgets the step's gradients and any prepared update. */
  clear(): void {
    this.grads.clear();
    this.shadow = null;
  }

  /**
   * Computes every owned parameter's update into shadow copies (value and optimizer state), leaving
   * the live ones untouched: a failure here changes nothing. `scale` is the clipping factor.
   */
  prepare(params: ReadonlyMap<number, ParamActor<T>>, lr: number, scale: number): void {
    const opt = this.require();
    const shadow = new Map<number, { value: T; state: unknown }>();
    for (const [id, param] of params) {
      const grad = this.grads.get(id);
      if (grad === undefined) {
        throw new InputError(
          `host ${this.worker}: parameter ${this.nameOf(id)} has no gradient for this step`,
          { node: this.nameOf(id) },
        );
      }
      const value = this.engine.copy(param.value) as unknown as Tensor;
      const old = this.states.get(id);
      const state =
        old === undefined ? opt.init(value) : opt.stateFromTensors(value, opt.stateToTensors(old));
      opt.update(value, scaled(grad as unknown as Tensor, scale), state, this.steps + 1, lr);
      shadow.set(id, { value: value as unknown as T, state });
    }
    this.shadow = shadow;
  }

  /** Makes the prepared update live (a swap: it cannot fail half-way). */
  commit(params: ReadonlyMap<number, ParamActor<T>>): void {
    if (this.shadow === null) throw new InputError(`host ${this.worker}: no prepared update to commit`);
    for (const [id, { value, state }] of this.shadow) {
      this.engine.share(value);
      params.get(id)!.value = value;
      this.states.set(id, state);
    }
    this.steps++;
    this.clear();
  }

  /** Calls `f` on every value held here: kept gradients, states, and a prepared update's shadows. */
  held(f: (value: T) => void): void {
    for (const g of this.grads.values()) f(g);
    const opt = this.optimizer;
    const states = (state: unknown) => {
      if (opt !== null && state !== undefined)
        for (const t of Object.values(opt.stateToTensors(state))) f(t as unknown as T);
    };
    for (const state of this.states.values()) states(state);
    if (this.shadow !== null) {
      for (const { value, state } of this.shadow.values()) {
        f(value);
        states(state);
      }
    }
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
