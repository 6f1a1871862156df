import { InputError } from '../errors.ts';
import { Tensor } from '../tensor/tensor.ts';
import { dict, own } from '../util/names.ts';
import type { LrSchedule } from './schedule.ts';

/**
 * An optimizer as pure per-parameter rules: `init` makes a parameter's state, `update` computes the
 * new value in place of the old one. Being per-parameter and pure, the same rule can run wherever the
 * parameter lives (the main thread, or the worker that owns it). State is float64 whatever the
 * parameter's dtype, and converts to and from named tensors so checkpoints can carry it.
 */
export interface Optimizer<S = unknown> {
  /** Its name: 'sgd', 'adam' or 'adamw' for the built-in ones. */
  readonly name: string;
  /** The base learning rate, used when no rate or schedule is given. */
  readonly lr: number;
  /** The hyperparameters, as plain data (printed, and recorded in checkpoints). */
  readonly config: Readonly<Record<string, number | boolean>>;
  /** The state of `param` before its first update. */
  init(param: Tensor): S;
  /** Updates `param` in place from `grad`; `step` counts from 1. */
  update(param: Tensor, grad: Tensor, state: S, step: number, lr: number): void;
  /** The state as named float64 tensors of shape [param.size]; views of the live state, not copies. */
  stateToTensors(state: S): Record<string, Tensor>;
  /** A fresh state for `param` from tensors made by `stateToTensors` (copied, and checked). */
  stateFromTensors(param: Tensor, tensors: Readonly<Record<string, Tensor>>): S;
}

/** An optimizer's state for a set of parameters, as checkpoints store it. */
export interface OptimizerCheckpoint {
  /** The optimizer's name. */
  name: string;
  /** Updates applied so far. */
  step: number;
  /** Per parameter name, the tensors of `stateToTensors`. */
  states: Record<string, Record<string, Tensor>>;
}

/** Wraps float64 state arrays as tensors without copying (a fresh Float64Array owns its buffer). */
export function float64Tensors(
  arrays: Readonly<Record<string, Float64Array<ArrayBuffer>>>,
): Record<string, Tensor> {
  const out = dict<Tensor>();
  for (const [key, a] of Object.entries(arrays)) out[key] = new Tensor('float64', [a.length], a);
  return out;
}

/** Copies the float64 state array `key` for `param` out of checkpoint tensors, checking its size. */
export function readStateArray(
  optimizer: string,
  param: Tensor,
  tensors: Readonly<Record<string, Tensor>>,
  key: string,
): Float64Array<ArrayBuffer> {
  const t = own(tensors, key);
  if (t === undefined) {
    throw new InputError(
      `${optimizer}: optimizer state has no '${key}' (found ${Object.keys(tensors).join(', ') || 'nothing'})`,
      {
        op: optimizer,
        expected: key,
        found: Object.keys(tensors),
      },
    );
  }
  if (t.size !== param.size) {
    throw new InputError(
      `${optimizer}: optimizer state '${key}' has ${t.size} elements, the parameter ${param.size}`,
      {
        op: optimizer,
        expected: param.size,
        found: t.size,
      },
    );
  }
  const out = new Float64Array(t.size);
  out.set(t.data);
  return out;
}

/** Applies an optimizer to a set of named parameters, keeping their states. */
export class OptimizerRun<S = unknown> {
  private readonly states = new Map<string, S>();
  private count = 0;
  private readonly schedule: LrSchedule | undefined;

  constructor(
    /** The optimizer it applies. */
    readonly optimizer: Optimizer<S>,
    options: { schedule?: LrSchedule } = {},
  ) {
    this.schedule = options.schedule;
  }

  /** Updates applied so far. */
  get step(): number {
    return this.count;
  }

  /** The rate used for update number `step` (from 1): the schedule's, or the optimizer's base rate. */
  lrAt(step: number): number {
    return this.schedule ? this.schedule(step) : this.optimizer.lr;
  }

  /** One update of every parameter that has a gradient, with the scheduled rate or `lr`. */
  apply(params: Record<string, Tensor>, grads: Readonly<Record<string, Tensor>>, lr?: number): void {
    this.count++;
    const rate = lr ?? this.lrAt(this.count);
    for (const [name, grad] of Object.entries(grads)) {
      const param = own(params, name);
      if (param === undefined) continue;
      let state = this.states.get(name);
      if (state === undefined) this.states.set(name, (state = this.optimizer.init(param)));
      this.optimizer.update(param, grad, state, this.count, rate);
    }
  }

  /** A copy of the step count and every state, for a checkpoint (later updates do not change it). */
  toCheckpoint(): OptimizerCheckpoint {
    const states = dict<Record<string, Tensor>>();
    for (const name of [...this.states.keys()].sort()) {
      const copy = dict<Tensor>();
      for (const [key, t] of Object.entries(this.optimizer.stateToTensors(this.states.get(name)!))) {
        const data = new Float64Array(t.size);
        data.set(t.data);
        copy[key] = new Tensor('float64', t.shape, data);
      }
      states[name] = copy;
    }
    return { name: this.optimizer.name, step: this.count, states };
  }

  /** Restores the step count and states saved by `toCheckpoint`, for the parameters `params`. */
  restore(checkpoint: OptimizerCheckpoint, params: Readonly<Record<string, Tensor>>): void {
    if (checkpoint.name !== this.optimizer.name) {
      throw new InputError(
        `OptimizerRun: checkpoint is for optimizer '${checkpoint.name}', this run uses '${this.optimizer.name}'`,
        {
          expected: this.optimizer.name,
          found: checkpoint.name,
        },
      );
    }
    const restored = new Map<string, S>();
    for (const [name, tensors] of Object.entries(checkpoint.states)) {
      const param = own(params, name);
      if (param === undefined) {
        throw new InputError(`OptimizerRun: checkpoint has optimizer state for unknown parameter '${name}'`, {
          found: name,
        });
      }
      restored.set(name, this.optimizer.stateFromTensors(param, tensors));
    }
    this.states.clear();
    for (const [name, state] of restored) this.states.set(name, state);
    this.count = checkpoint.step;
  }
}
