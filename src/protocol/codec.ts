import { ProtocolError } from '../errors.ts';
import { sizeOf } from '../tensor/shape.ts';
import { bytesPerElement, type DType, Tensor } from '../tensor/tensor.ts';
import { Check, isPlain } from './check.ts';
import type { HostInput, HostOutput, Limits, StartMessage, UpdateMessage, WireTensor } from './envelope.ts';

// Note [envelope encoding]
// Data envelopes are columns (Note [columnar envelope] in batch.ts). The control plane (parameters,
// optimizer state) sends tensors as {dtype, shape, buffer}, the buffer transferred, by structured
// clone: few, often large tensors. msgpack was measured against structured clone for envelopes and
// was no faster (figures: docs/measurements.md), and msgpackr's `pack` returns a view into a shared
// arena whose buffer must never be transferred (after one huge message, even a tiny header would drag
// the whole arena along). Byte frames use msgpack for their few object messages only, copied into the
// frame (Note [byte framing] in frame.ts). Either way the receiver validates: structured clone checks
// types, not the protocol.

/** Where a message travels, for errors: 'worker 0 -> worker 1', 'coordinator -> worker 2'. */
export function edgeName(from: number, to: number): string {
  const end = (w: number) => (w < 0 ? 'coordinator' : `worker ${w}`);
  return `${end(from)} -> ${end(to)}`;
}

/**
 * The transfer list of one envelope. A tensor whose storage is its whole ArrayBuffer is transferred as
 * is; a view of part of a buffer, a shared buffer, or a buffer already in this envelope is copied
 * first (transferring one buffer twice in one list throws DataCloneError). A detached buffer is the
 * sender's bug: a ProtocolError naming the edge.
 */
export class Transfers {
  readonly list: ArrayBuffer[] = [];
  copies = 0;
  private readonly seen = new Set<ArrayBufferLike>();

  take(t: Tensor, edge: string, what: string): WireTensor {
    return { dtype: t.dtype, shape: [...t.shape], buffer: this.buffer(t, edge, what) };
  }

  /** The tensor's storage as a buffer of its own, added to the list. */
  buffer(t: Tensor, edge: string, what: string): ArrayBuffer {
    checkAttached(t, edge, what);
    const data = t.data;
    let buffer = data.buffer as ArrayBuffer;
    const owned =
      data.byteOffset === 0 &&
      data.byteLength === buffer.byteLength &&
      !(buffer instanceof SharedArrayBuffer);
    if (!owned || this.seen.has(buffer)) {
      buffer = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice().buffer;
      this.copies++;
    }
    this.seen.add(buffer);
    this.list.push(buffer);
    return buffer;
  }
}

/** A tensor about to be sent still holds all its bytes; a detached one is the sender's bug (ProtocolError naming the edge). Returns its byte length. */
export function checkAttached(t: Tensor, edge: string, what: string): number {
  const need = sizeOf(t.shape) * bytesPerElement(t.dtype);
  if (t.data.byteLength !== need) {
    throw new ProtocolError(
      `${edge}: ${what}: the tensor ${t.dtype}[${t.shape.join(',')}] has ${t.data.byteLength} bytes of ${need}: its buffer was detached (transferred earlier?)`,
      { edge, phase: 'send', expected: need, found: t.data.byteLength },
    );
  }
  return need;
}

/** Parameters as [id, tensor] pairs, each a fresh copy the caller may transfer. */
export function encodeParams(
  values: ReadonlyMap<number, Tensor>,
  edge: string,
): { value: [number, WireTensor][]; tx: Transfers } {
  const tx = new Transfers();
  const list: [number, WireTensor][] = [];
  for (const [id, t] of values) {
    const copy = new Tensor(t.dtype, t.shape, t.data.slice() as typeof t.data);
    list.push([id, tx.take(copy, edge, `parameter %${id}`)]);
  }
  return { value: list, tx };
}

export function decodeParams(raw: unknown, edge: string, limits: Limits): Map<number, Tensor> {
  const c: Check = new Check(edge, 'parameters');
  if (!Array.isArray(raw)) c.fail('an array of [id, tensor] pairs', raw);
  const out = new Map<number, Tensor>();
  raw.forEach((pair: unknown, i) => {
    const ci: Check = c.at(`parameter ${i}`);
    if (!Array.isArray(pair) || pair.length !== 2) ci.fail('an [id, tensor] pair', pair);
    const id = ci.int(pair[0], 'id', 0, limits.nodes);
    if (out.has(id)) ci.fail('each parameter once', `%${id} twice`, true);
    out.set(id, decodeTensor(pair[1], ci.at(`%${id}`)));
  });
  return out;
}

/** Optimizer state as a checkpoint holds it (the shape of OptimizerCheckpoint in src/optim). */
export interface OptimizerState<T = Tensor> {
  readonly name: string;
  readonly step: number;
  readonly states: Record<string, Record<string, T>>;
}

/** Optimizer state for a port: tensors transferred, or copies of them transferred (`copy`: the caller keeps its own). */
export function encodeOptimizerState(
  state: OptimizerState,
  edge: string,
  copy: boolean,
): { value: OptimizerState<WireTensor>; tx: Transfers } {
  const tx = new Transfers();
  const states: Record<string, Record<string, WireTensor>> = {};
  for (const [param, tensors] of Object.entries(state.states)) {
    const wire: Record<string, WireTensor> = {};
    for (const [k, t] of Object.entries(tensors)) {
      const own = copy ? new Tensor(t.dtype, t.shape, t.data.slice() as typeof t.data) : t;
      define(wire, k, tx.take(own, edge, `optimizer state ${param}.${k}`));
    }
    define(states, param, wire);
  }
  return { value: { name: state.name, step: state.step, states }, tx };
}

export function decodeOptimizerState(raw: unknown, edge: string): OptimizerState {
  const c: Check = new Check(edge, 'optimizer state');
  const r = c.record(raw, ['name', 'step', 'states']);
  if (typeof r.name !== 'string') c.fail('name: a string', r.name);
  const step = c.int(r.step, 'step', 0, 2 ** 53);
  const states: Record<string, Record<string, Tensor>> = {};
  for (const [param, tensors] of Object.entries(c.map(r.states, 'states: {parameter: {name: tensor}}'))) {
    const out: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(c.at(param).map(tensors, '{name: tensor}'))) {
      define(out, k, decodeTensor(t, c.at(`${param}.${k}`)));
    }
    define(states, param, out);
  }
  return { name: r.name as string, step, states };
}

/** Sets a key that may be any string, `__proto__` included, as an own property. */
function define<V>(o: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

type Decoder<M> = (m: Record<string, unknown>, c: Check, limits: Limits) => M;

const stepField = (c: Check, v: unknown) => c.int(v, 'step', 0, 2 ** 31);
const mbField = (c: Check, v: unknown) => c.int(v, 'mb', 0, 2 ** 24);

/** The messages that travel as objects, not columns (batch.ts): each checked field by field. */
export const OBJECT_MESSAGES: {
  [K in 'start' | 'update' | 'updated' | 'failed' | 'failpoint' | 'anomaly']: Decoder<
    HostInput<Tensor> | HostOutput<Tensor>
  >;
} = {
  start: (m, c, l) => {
    c.record(m, ['kind', 'step', 'microbatches', 'shards'], ['trainingStep', 'outputs', 'update']);
    stepField(c, m.step);
    if (m.trainingStep !== undefined) c.int(m.trainingStep, 'trainingStep', 0, 2 ** 32);
    if (m.update !== undefined) {
      // Note [local update]: the rate and the clipping norm of the update each host applies itself.
      const u = c.at('update').record(m.update, ['lr'], ['clipNorm']);
      if (typeof u.lr !== 'number' || !(u.lr >= 0) || !Number.isFinite(u.lr))
        c.fail('update.lr: a finite number >= 0', u.lr);
      if (
        u.clipNorm !== undefined &&
        (typeof u.clipNorm !== 'number' || !(u.clipNorm > 0) || !Number.isFinite(u.clipNorm))
      )
        c.fail('update.clipNorm: a finite number > 0', u.clipNorm);
    }
    if (m.outputs !== undefined) {
      if (!Array.isArray(m.outputs) || m.outputs.length > l.nodes)
        c.fail('outputs: an array of node ids', m.outputs);
      for (const [i, id] of (m.outputs as unknown[]).entries()) c.int(id, `outputs[${i}]`, 0, l.nodes);
    }
    const microbatches = c.int(m.microbatches, 'microbatches', 1, 2 ** 24);
    if (!Array.isArray(m.shards)) c.fail('shards: an array', m.shards);
    const shards = (m.shards as unknown[]).map((s, i) => {
      const cs: Check = c.at(`shard ${i}`);
      const r = cs.record(s, ['replica', 'mb', 'bindings', 'scale']);
      cs.int(r.replica, 'replica', 0, l.replicas);
      cs.int(r.mb, 'mb', 0, microbatches);
      if (typeof r.scale !== 'number' || !Number.isFinite(r.scale))
        cs.fail('scale: a finite number', r.scale);
      if (!Array.isArray(r.bindings)) cs.fail('bindings: an array of [symbol, size]', r.bindings);
      for (const b of r.bindings as unknown[]) {
        if (!Array.isArray(b) || b.length !== 2 || typeof b[0] !== 'string')
          cs.fail('a [symbol, size] binding', b);
        cs.int((b as unknown[])[1], `binding ${(b as unknown[])[0]}`, 0, 2 ** 31);
      }
      return r;
    });
    return { ...m, shards } as unknown as StartMessage;
  },
  update: (m, raw) => {
    // A refused update is the update's failure (phase 'update', its step): the coordinator then
    // breaks the runtime with it instead of waiting for an acknowledgement (Note [deferred update]).
    const c = raw.with({ phase: 'update', ...(Number.isInteger(m.step) ? { step: m.step as number } : {}) });
    c.record(m, ['kind', 'step', 'lr', 'scale']);
    stepField(c, m.step);
    for (const k of ['lr', 'scale'] as const)
      if (typeof m[k] !== 'number' || !Number.isFinite(m[k])) c.fail(`${k}: a finite number`, m[k]);
    return m as unknown as UpdateMessage;
  },
  updated: (m, c) => {
    c.record(m, ['kind', 'step']);
    stepField(c, m.step);
    return m as unknown as HostOutput<Tensor>;
  },
  failed: (m, c, l) => {
    c.record(m, ['kind', 'step', 'error']);
    stepField(c, m.step);
    const e = c.at('error').record(m.error, ['name', 'message', 'context'], ['stack', 'code', 'fields']);
    for (const k of ['name', 'message'] as const)
      if (typeof e[k] !== 'string') c.fail(`error.${k}: a string`, e[k]);
    if (e.stack !== undefined && typeof e.stack !== 'string') c.fail('error.stack: a string', e.stack);
    if (e.fields !== undefined && !isPlain(e.fields)) c.fail('error.fields: an object', e.fields);
    const where = c
      .at('error.context')
      .record(e.context, ['worker'], ['node', 'op', 'step', 'microbatch', 'replica', 'phase']);
    c.int(where.worker, 'error.context.worker', -1, l.workers);
    return m as unknown as HostOutput<Tensor>;
  },
  anomaly: (m, c, l) => {
    c.record(m, ['kind', 'step', 'node', 'mb', 'replica', 'phase']);
    stepField(c, m.step);
    c.int(m.node, 'node', 0, l.nodes);
    mbField(c, m.mb);
    c.int(m.replica, 'replica', 0, l.replicas);
    c.oneOf(m.phase, 'phase', ['forward', 'backward']);
    return m as unknown as HostOutput<Tensor>;
  },
  failpoint: (m, c, l) => {
    c.record(m, ['kind', 'action', 'task']);
    c.oneOf(m.action, 'action', ['throw', 'exit', 'hang', 'pause', 'drop', 'dup']);
    const t = c.at('task').record(m.task, ['phase', 'node', 'replica', 'mb'], ['stage']);
    c.oneOf(t.phase, 'task.phase', ['forward', 'backward', 'input', 'weight']);
    if (t.stage !== undefined) c.int(t.stage, 'task.stage', -1, 2 ** 24);
    c.int(t.node, 'task.node', 0, l.nodes);
    c.int(t.replica, 'task.replica', 0, l.replicas);
    mbField(c, t.mb);
    return m as unknown as HostOutput<Tensor>;
  },
};

/** A wire tensor checked against its own shape (dtype known, byte length = elements x width) and rebuilt. */
export function decodeTensor(raw: unknown, c: Check): Tensor {
  const t = c.record(raw, ['dtype', 'shape', 'buffer']);
  const dtype = c.oneOf(t.dtype, 'dtype', ['float32', 'float64']) as DType;
  if (!Array.isArray(t.shape) || t.shape.length > 32) c.fail('shape: an array of at most 32 sizes', t.shape);
  const shape = t.shape.map((d: unknown, i) => c.int(d, `shape[${i}]`, 0, 2 ** 31));
  const size = sizeOf(shape);
  if (Object.prototype.toString.call(t.buffer) !== '[object ArrayBuffer]')
    c.fail('buffer: an ArrayBuffer', t.buffer);
  const buffer = t.buffer as ArrayBuffer;
  const need = size * bytesPerElement(dtype);
  if (buffer.byteLength !== need) {
    c.fail(`a ${dtype}[${shape.join(',')}] tensor of ${need} bytes`, `${buffer.byteLength} bytes`, true);
  }
  return new Tensor(dtype, shape, dtype === 'float32' ? new Float32Array(buffer) : new Float64Array(buffer));
}

/**
 * What the host threw while taking a message: a ProtocolError naming the edge and the message, in
 * phase 'receive' (as the envelope checks' are).
 */
export function refused(edge: string, what: string, err: unknown, step: number): ProtocolError {
  if (err instanceof ProtocolError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new ProtocolError(
    `${edge}: ${what} was refused by the host: ${why}`,
    { edge, step, phase: 'receive' },
    { cause: err },
  );
}

/** Names a message for errors: 'gradient %13 <- %15 slot 0, replica 0, microbatch 1'. */
export function describe(
  m: { kind: string } & Partial<Record<'node' | 'consumer' | 'slot' | 'replica' | 'mb', unknown>>,
): string {
  const edge =
    m.kind === 'gradient'
      ? ` %${m.node} <- %${m.consumer} slot ${m.slot}`
      : m.node !== undefined
        ? ` %${m.node}`
        : '';
  const where = [
    m.replica !== undefined ? `replica ${m.replica}` : '',
    m.mb !== undefined ? `microbatch ${m.mb}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return `${m.kind}${edge}${where ? `, ${where}` : ''}`;
}
