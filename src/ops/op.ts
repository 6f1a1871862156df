import type { Shape } from '../tensor/shape.ts';
import type { DType, Tensor } from '../tensor/tensor.ts';
import type { AttrKind } from './attrs.ts';
import type { Ops } from './ops.ts';

/** Op attributes: plain, serializable data (numbers, booleans, strings, arrays of them, tensors for const). */
export type Attrs = Readonly<Record<string, unknown>>;

/**
 * What a forward may know of the run that calls it: the step, the shard (microbatch and replica),
 * and whether it trains or evaluates. Every engine passes one; only `stepKey` reads it (Note [run
 * context] in step-key.ts).
 */
export interface RunContext {
  /** The training step (0 in inference). */
  readonly step: number;
  /** The shard's microbatch. */
  readonly microbatch: number;
  /** The shard's replica. */
  readonly replica: number;
  /** Training (dropout on) or evaluation (off). */
  readonly training: boolean;
}

/** Evaluation outside any step: what `evaluate`, `predict` and the eager ops run with. */
export const EVAL_RUN: RunContext = Object.freeze({ step: 0, microbatch: 0, replica: 0, training: false });

/** The attributes of an op given none: one shared, frozen object, not one per node or eager op. */
export const NO_ATTRS: Attrs = Object.freeze({});

/** What shape rules see of a value: its (possibly symbolic) shape and dtype. */
export interface TypeInfo {
  /** The shape (dimensions may be symbolic names). */
  readonly shape: Shape;
  /** The dtype. */
  readonly dtype: DType;
}

/**
 * What a VJP sees. `input(i)` and `output()` are available only when the op declares that its
 * backward keeps them (`saves`); asking for anything else throws, so `saves` cannot lie.
 */
export interface VjpContext<T, A extends Attrs = Attrs> {
  /** The node's attributes. */
  readonly attrs: A;
  /** The cotangent of the output (same shape as the output). */
  readonly g: T;
  /** The primal value of input `i`, if the op `saves` it. */
  input(i: number): T;
  /** The op's output, if the op `saves` it. */
  output(): T;
  /** The shapes of the inputs. */
  readonly inputShapes: readonly Shape[];
  /** The shape of the output. */
  readonly outputShape: Shape;
  /** The dtype of the output. */
  readonly dtype: DType;
  /** Which inputs want a gradient; a VJP may skip the others (this is how a backward splits into I and W). */
  readonly needs: readonly boolean[];
}

/**
 * A VJP: one cotangent per input, or null where none flows. Written once against `Ops<T>`, it runs
 * eagerly (T = Tensor) and symbolically (T = a graph node, for gradGraph). A returned cotangent may
 * have the broadcast shape of the output: the engine sums it back to the input's shape.
 */
export type Vjp<A extends Attrs> = <T>(o: Ops<T>, ctx: VjpContext<T, A>) => readonly (T | null)[];

/**
 * What an op's backward keeps per microbatch between its forward and its VJP, so a host knows what
 * to hold and memory can be reported.
 */
export interface Saves {
  /** Indices of the inputs the backward needs, 'all' or 'none'. */
  readonly inputs: readonly number[] | 'all' | 'none';
  /** Whether the backward needs the output. */
  readonly output: boolean;
}

/**
 * An op: its name, arity and attributes, shape rule, forward, VJP and what the VJP keeps.
 * `defineOp` registers one.
 */
export interface OpDef<A extends Attrs = Attrs> {
  /** The unique name it is registered and recorded under. */
  readonly name: string;
  /** How many inputs, or 'variadic' (one or more). */
  readonly arity: number | 'variadic';
  /**
   * Every attribute and its kind, checked before the shape rule (`checkAttrs` in attrs.ts), so a
   * shape rule reads attributes of the declared kinds and a graph (a loaded one too) carries no other.
   * `{}` for an op without attributes; absent (a user's op may leave it out): not checked.
   */
  readonly attrs?: Readonly<Record<string, AttrKind>>;
  /** Attributes that hold shapes, which may name symbolic dimensions resolved when the graph runs. */
  readonly shapeAttrs?: readonly string[];
  /** The shape rule: checks inputs and attributes, throws a ShapeError saying what was expected. */
  infer(inputs: readonly TypeInfo[], attrs: A): TypeInfo;
  /** Computes the output from the input tensors (their shapes already checked by `infer`), in a run's context. */
  forward(inputs: readonly Tensor[], attrs: A, run: RunContext): Tensor;
  /** What the backward keeps per microbatch. */
  readonly saves: Saves;
  /** Absent for ops no gradient flows through (comparisons, oneHot, ...). */
  readonly vjp?: Vjp<A>;
  /**
   * False when the VJP cannot be split into an input part and a weight part without repeating its
   * work (a zero-bubble schedule then runs all of it in the input part). Default: it splits, because
   * every VJP honours `needs`.
   */
  readonly splitVjp?: boolean;
  /** Inputs that never take a gradient (indices, labels); default: every input can. */
  readonly nondiff?: readonly number[];
  /** Rough FLOPs of one forward, for placement and the simulator's cost model. */
  flops?(inputs: readonly TypeInfo[], output: TypeInfo, attrs: A): number;
}

export function savesInput(def: OpDef, i: number): boolean {
  const s = def.saves.inputs;
  return s === 'all' || (s !== 'none' && s.includes(i));
}
