/**
 * Errors are values with context. Every error backflow throws is a `BackflowError` subclass whose
 * `context` names where it happened (op, node, input index, worker, step, microbatch, phase ...),
 * and whose message says what was expected and what was found.
 */
export interface ErrorContext {
  /** The op involved. */
  op?: string;
  /** The node involved: its id, or its name or output name. */
  node?: string | number;
  /** The op's input slot involved. */
  input?: number;
  /** The worker (host) where it happened. */
  worker?: number;
  /** The data-parallel replica. */
  replica?: number;
  /** The runtime's step number. */
  step?: number;
  /** The microbatch. */
  microbatch?: number;
  /** What the node or host was doing, e.g. 'forward' or 'backward'. */
  phase?: string;
  /** What was expected. */
  expected?: unknown;
  /** What was found instead. */
  found?: unknown;
  [key: string]: unknown;
}

/**
 * The base class of every error backflow throws: `name` is the subclass's name, `context` says
 * where, and `cause` (when given) keeps the original error.
 */
export class BackflowError extends Error {
  /** Where it happened and what was expected and found; subclasses add their own keys. */
  readonly context: ErrorContext;
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.context = context;
  }
}

/** A shape or dtype does not fit an op or a feed. */
export class ShapeError extends BackflowError {}
/** A dtype is not supported or does not match. */
export class DTypeError extends BackflowError {}
/** A graph is malformed: cycle, dangling reference, unknown op, duplicate name. */
export class GraphError extends BackflowError {}
/** An op is registered twice, unknown, or misused. */
export class OpError extends BackflowError {}
/**
 * A module of the runtime's `ops` option could not be imported (missing, or it threw):
 * `context.module` names it, `cause` is what the import threw.
 */
export class OpModuleError extends BackflowError {}
/** A feed, parameter or option given to an engine is missing or wrong. */
export class InputError extends BackflowError {}
/** Serialized bytes are corrupt, truncated, or of a newer format. */
export class FormatError extends BackflowError {}
/** A gradient request cannot be honoured (non-scalar loss without a seed, unknown wrt ...). */
export class GradientError extends BackflowError {}

/** Formats a shape the way error messages and printers show it: `[B,8]`. */
export function fmtShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(',')}]`;
}

/** Formats what an error found: strings quoted, NaN and the infinities as such (JSON shows null). */
export function fmtFound(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.slice(0, 16).map(fmtFound).join(',')}${v.length > 16 ? ',...' : ''}]`;
  if (typeof v !== 'object' || v === null) return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/**
 * A step failed in a worker: an op threw, the worker died or exited, or a protocol error. `context`
 * names worker, node, op, step, microbatch, replica and phase where known; `cause` keeps the original
 * error's name, message, stack and custom fields.
 */
export class WorkerError extends BackflowError {}
/**
 * Tensors would not fit a worker's memory budget (`memoryLimitMb`, Note [memory budget]): before any
 * worker starts, the plan's estimate is over it (`context.worker`, and `context.largest` the largest
 * tensors); or during a step, a task's output would take a worker's live tensor bytes over it
 * (`context` names worker, node, step, microbatch and phase).
 */
export class MemoryBudgetError extends BackflowError {}
/** A step did not finish by its deadline; `context.waiting` lists what was still missing. */
export class StepTimeoutError extends BackflowError {}
/**
 * The Trainer restarted its runtime as often as its `restarts` option allows and a worker failed
 * again: `causes` holds every worker fault of the fit, in order, and `cause` the last (Note [bounded
 * restarts], src/train/restarts.ts).
 */
export class RestartLimitError extends BackflowError {
  /** Every worker fault of the fit, in order. */
  readonly causes: readonly Error[];
  constructor(message: string, context: ErrorContext, causes: readonly Error[]) {
    super(message, context, { cause: causes[causes.length - 1] });
    this.causes = causes;
  }
}
/** The runtime was closed (or is closing) when the call was made or while it ran. */
export class RuntimeClosedError extends BackflowError {}
/** A call that must run alone (`Trainer.fit`) was made while another was running; `context.call` names it. */
export class BusyError extends BackflowError {}
/** A gradient (or, in anomaly mode, a value) was NaN or infinite; `context` names where. */
export class NonFiniteError extends BackflowError {}
/** A message on a port was malformed, of another protocol version, or of the wrong size. */
export class ProtocolError extends BackflowError {}
/**
 * A pipeline schedule is malformed (bad action text, missing receive, deadlock ...) or its configuration
 * breaks a rule (1F1B with fewer microbatches than stages ...). `context.rule` names the broken rule;
 * validator errors print the grid of every worker's actions with the failing step marked.
 */
export class ScheduleError extends BackflowError {}

/**
 * A model file (saveModel, loadModel) cannot be written or read: `context.path` names the file. This
 * class itself: the file system refused (`code` and `cause` are its error's); the subclasses say what
 * is wrong with the bytes.
 */
export class ModelFileError extends BackflowError {}
/**
 * The bytes are not a model file this build wrote: bad magic, a checksum that does not match, a
 * length other than the prefix says, a graph that does not check, parameters that do not fit it.
 * `context.part` names the part ('prefix', 'body', 'graph', 'parameters').
 */
export class ModelCorruptError extends ModelFileError {}
/** The model file was written in a newer format version than this build reads. */
export class ModelVersionError extends ModelFileError {}

/** A checkpoint cannot be saved or loaded; the subclasses say why. */
export class CheckpointError extends BackflowError {}
/** A checksum does not match: `context.part` names the tensor, or 'prefix' / 'header'. */
export class CheckpointCorruptError extends CheckpointError {}
/** The checkpoint file is shorter than its header says (`context.expected` / `found` bytes). */
export class CheckpointTruncatedError extends CheckpointError {}
/** The checkpoint was written in a newer format version than this build reads. */
export class CheckpointVersionError extends CheckpointError {}
/** The checkpoint's parameters do not have the expected names and shapes. */
export class CheckpointShapeError extends CheckpointError {}
/**
 * The file system refused (missing or read-only directory, disk full ...): `code`, `errno`, `syscall`
 * and `path` come from the system error, which is kept as `cause`.
 */
export class CheckpointIOError extends CheckpointError {
  /** The system error's code, e.g. 'ENOENT' or 'ENOSPC'. */
  readonly code: string | undefined;
  /** The system error's number. */
  readonly errno: number | undefined;
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.code = typeof context['code'] === 'string' ? context['code'] : undefined;
    this.errno = typeof context['errno'] === 'number' ? context['errno'] : undefined;
  }
}
