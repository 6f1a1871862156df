// The events hosts exchange with each other and with the coordinator, and what they report: types
// only. `T` is how a tensor is carried: a Tensor inside a thread, a WireTensor on a port
// (src/protocol is the only place that converts between them).
import type { Tensor } from '../tensor/tensor.ts';

/**
 * Data messages. Every one carries the step and, where it has one, the microbatch and replica, and
 * names the edge it travels on (producer node, and consumer node + input slot for gradients).
 */
export type DataMessage<T = Tensor> =
  /** An input's value for one microbatch, from the coordinator to the input node's host. */
  | {
      readonly kind: 'feed';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly node: number;
      readonly tensor: T;
    }
  /** A node's output for one microbatch, to the host of its consumers in that replica. */
  | {
      readonly kind: 'activation';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly node: number;
      readonly tensor: T;
    }
  /** A parameter's value for a whole step, to the host of its consumers (every replica on that host). */
  | { readonly kind: 'param'; readonly step: number; readonly node: number; readonly tensor: T }
  /** One gradient contribution, from input `slot` of `consumer` back to `node`. */
  | {
      readonly kind: 'gradient';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly node: number;
      readonly consumer: number;
      readonly slot: number;
      readonly tensor: T;
    };

/**
 * Flow control (Note [activation credits] in src/actor/flow-control.ts): the host that receives stage
 * `stage`'s activations has consumed microbatch `mb`'s (every reader of them ran its forward).
 */
export interface Credit {
  readonly kind: 'credit';
  readonly step: number;
  readonly mb: number;
  readonly stage: number;
}

/** One shard of a step's batch: microbatch `mb` of replica `replica`. */
export interface Shard {
  readonly replica: number;
  readonly mb: number;
  /** Sizes of the symbolic dimensions in this shard (e.g. B -> 8). */
  readonly bindings: readonly (readonly [string, number])[];
  /** The seed of this shard's loss: its share of the batch, Note [microbatch scaling]. */
  readonly scale: number;
}

/** Step metadata every host gets before the step's data. */
export interface StepStart {
  /** The step's number: it orders messages, and counts every step the runtime starts. */
  readonly step: number;
  readonly microbatches: number;
  readonly shards: readonly Shard[];
  /**
   * The training step random ops key their draws with (Note [run context] in src/ops/step-key.ts):
   * the caller's count, so that a run resumed from a checkpoint draws what it would have drawn.
   * Absent: `step`.
   */
  readonly trainingStep?: number;
  /**
   * Present in an inference step (Note [inference steps] in src/runtime/infer.ts): forward only, in
   * evaluation mode, and the actors of these nodes report their values (`output`).
   */
  readonly outputs?: readonly number[];
  /**
   * Present when every host applies this step's update itself (Note [local update] in
   * src/actor/local-update.ts): the update's rate, and the norm to clip the gradients to, if any.
   */
  readonly update?: LocalUpdateRule;
}

/** What a host needs to apply a step's update itself (Note [local update]). */
export interface LocalUpdateRule {
  /** The learning rate of the step's update. */
  readonly lr: number;
  /** Gradients are scaled down to this global norm when above it (`clipNorm`); absent: no clipping. */
  readonly clipNorm?: number;
}

/**
 * The coordinator's word that step `step` ended well: every host applies its parameters' update
 * (Note [deferred update] in src/runtime/deferred-update.ts). `scale` is the clipping factor.
 */
export interface StepUpdate {
  readonly step: number;
  readonly lr: number;
  readonly scale: number;
}

/** A shard's loss: reported to the coordinator, and sent to every other host under Note [local update]. */
export type LossReport = Extract<Report, { kind: 'loss' }>;

/** What hosts report to the coordinator. */
export type Report<T = Tensor> =
  | {
      readonly kind: 'loss';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly value: number;
    }
  | { readonly kind: 'grad'; readonly step: number; readonly node: number; readonly tensor: T }
  /** The gradient of an input named in `wrt`, for one shard (Note [input gradients]). */
  | {
      readonly kind: 'inputGrad';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly node: number;
      readonly tensor: T;
    }
  /** An inference step's value of a node it asked for, for one shard. */
  | {
      readonly kind: 'output';
      readonly step: number;
      readonly mb: number;
      readonly replica: number;
      readonly node: number;
      readonly tensor: T;
    }
  /** With an optimizer on the workers: a parameter's gradient is complete and kept there; its sum of squares. */
  | { readonly kind: 'gradNorm'; readonly step: number; readonly node: number; readonly sumsq: number }
  | { readonly kind: 'failed'; readonly step: number; readonly error: ErrorReport }
  /** The host applied step `step`'s update (Note [deferred update]). */
  | { readonly kind: 'updated'; readonly step: number }
  /** Anomaly mode: a task made a NaN or an infinity (a forward output, or a gradient contribution). */
  | {
      readonly kind: 'anomaly';
      readonly step: number;
      readonly node: number;
      readonly mb: number;
      readonly replica: number;
      readonly phase: 'forward' | 'backward';
    };

/** An error as data, so it can cross threads: name, message, stack, custom fields and where it happened. */
export interface ErrorReport {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly code?: unknown;
  readonly fields?: Readonly<Record<string, unknown>>;
  readonly context: {
    readonly worker: number;
    readonly node?: string;
    readonly op?: string;
    readonly step?: number;
    readonly microbatch?: number;
    readonly replica?: number;
    /** 'receive': a refused envelope or message (Note [refused envelopes] in src/runtime/host-shell.ts). */
    readonly phase?: 'forward' | 'backward' | 'param' | 'feed' | 'update' | 'receive';
  };
}
