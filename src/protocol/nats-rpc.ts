// Request-reply over NATS for values of any size: the control plane between a coordinator and the
// node processes (Note [NATS calls]).
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { BackflowError, type ErrorContext, ProtocolError } from '../errors.ts';
import { packValue, unpackValue } from './value-codec.ts';

// Note [NATS calls]
// NATS request-reply carries one message each way, and a message must fit the server's max_payload
// (1 MiB by default), where a control call may carry a model's parameters. So a call is a value
// packed as msgpack (value-codec.ts), cut into chunks below max_payload, each with a head of six
// little-endian words: magic 'BFRC', the call's id, the chunk's index, the number of chunks, the
// body's bytes, and the kind (call or answer). The caller publishes a call's chunks to the server's
// subject with its own inbox as the reply subject; NATS keeps one publisher's messages on one subject
// in order, and the server puts a call back together per (reply subject, id), runs its handler, and
// publishes the answer's chunks to the reply subject. The caller matches answers to calls by id, and
// rejects a call that gets no answer within its timeout (no server, a dead one, a lost connection).
// A body is allocated when its first chunk arrives, only if its declared size is within the limit;
// every later chunk must agree with the first. At most MAX_PARTIAL calls are being put together at
// once per server: an abandoned one makes room for the next.

const MAGIC = 0x43524642; // 'BFRC'
const HEAD_BYTES = 24;
const CALL = 0;
const ANSWER = 1;
const MAX_PARTIAL = 64;
/** The largest body a call or an answer may have, by default. */
export const MAX_BODY_BYTES = 2 ** 30;

/** What a remote handler threw, as the caller sees it. */
export class RemoteError extends BackflowError {
  constructor(
    message: string,
    context: ErrorContext,
    /** The name of the error the handler threw ('WorkerError', 'ControlTimeoutError' ...). */
    readonly remoteName: string,
  ) {
    super(message, context);
  }
}

/** A call that got no answer in time. */
export class CallTimeoutError extends BackflowError {}

function chunks(body: Uint8Array, id: number, kind: number, maxPayload: number): Uint8Array[] {
  const step = Math.max(1, maxPayload - HEAD_BYTES - 512);
  const count = Math.max(1, Math.ceil(body.length / step));
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = body.subarray(i * step, (i + 1) * step);
    const chunk = new Uint8Array(HEAD_BYTES + part.length);
    const head = new DataView(chunk.buffer);
    for (const [k, w] of [MAGIC, id, i, count, body.length, kind].entries()) head.setUint32(k * 4, w, true);
    chunk.set(part, HEAD_BYTES);
    out.push(chunk);
  }
  return out;
}

/** Puts bodies back together from their chunks (Note [NATS calls]). */
class Assembler {
  private readonly partial = new Map<
    string,
    { body: Uint8Array; filled: number; next: number; count: number }
  >();

  constructor(
    private readonly kind: number,
    private readonly maxBodyBytes: number,
  ) {}

  /** The whole body once its last chunk is in, or null; a ProtocolError for a chunk that does not fit. */
  add(key: string, data: Uint8Array): { id: number; body: Uint8Array } | null {
    if (data.length < HEAD_BYTES)
      throw new ProtocolError(`a control chunk of ${data.length} bytes: expected at least ${HEAD_BYTES}`);
    const head = new DataView(data.buffer, data.byteOffset, HEAD_BYTES);
    const word = (i: number) => head.getUint32(i * 4, true);
    const [magic, id, index, count, bytes, kind] = [word(0), word(1), word(2), word(3), word(4), word(5)];
    if (magic !== MAGIC || kind !== this.kind)
      throw new ProtocolError(
        `a control chunk: expected magic 'BFRC' and kind ${this.kind}, found 0x${magic.toString(16)} and ${kind}`,
      );
    if (bytes > this.maxBodyBytes)
      throw new ProtocolError(`a control body of ${bytes} bytes: expected at most ${this.maxBodyBytes}`, {
        expected: this.maxBodyBytes,
        found: bytes,
      });
    const k = `${key} ${id}`;
    if (index === 0) {
      if (!this.partial.has(k) && this.partial.size >= MAX_PARTIAL)
        this.partial.delete(this.partial.keys().next().value!);
      this.partial.set(k, { body: new Uint8Array(bytes), filled: 0, next: 0, count });
    }
    const p = this.partial.get(k);
    const part = data.subarray(HEAD_BYTES);
    if (
      p === undefined ||
      index !== p.next ||
      count !== p.count ||
      p.body.length !== bytes ||
      p.filled + part.length > bytes
    ) {
      this.partial.delete(k);
      throw new ProtocolError(
        `control call ${id}: chunk ${index} of ${count} does not follow what came before`,
      );
    }
    p.body.set(part, p.filled);
    p.filled += part.length;
    p.next++;
    if (p.next < p.count) return null;
    this.partial.delete(k);
    if (p.filled !== bytes)
      throw new ProtocolError(`control call ${id}: ${p.filled} of ${bytes} bytes arrived`);
    return { id, body: p.body };
  }
}

/** The maximum payload the server accepts (its INFO), or 1 MiB. */
function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1 << 20;
}

/**
 * Serves calls on `subject`: each call's body is decoded and given to `handler`, and what it returns
 * (or throws) goes back to the caller. Handlers run concurrently; answers go out as they are ready.
 */
export function serveCalls(
  nc: NatsConnection,
  subject: string,
  handler: (value: unknown) => Promise<unknown>,
  options: { readonly maxBodyBytes?: number; readonly onError?: (err: Error) => void } = {},
): Subscription {
  const assembler = new Assembler(CALL, options.maxBodyBytes ?? MAX_BODY_BYTES);
  return nc.subscribe(subject, {
    callback: (err, msg: Msg) => {
      if (err !== null || msg.reply === undefined || msg.reply === '') return;
      const reply = msg.reply;
      let whole: { id: number; body: Uint8Array } | null;
      try {
        whole = assembler.add(reply, msg.data);
      } catch (e) {
        options.onError?.(e as Error);
        return;
      }
      if (whole === null) return;
      const { id, body } = whole;
      void (async () => {
        let answer: unknown;
        try {
          answer = { ok: await handler(unpackValue(body, `control call ${id}`)) };
        } catch (e) {
          const error = e as Error & { context?: ErrorContext };
          answer = {
            error: {
              name: error?.name ?? 'Error',
              message: error?.message ?? String(e),
              context: error?.context ?? {},
            },
          };
        }
        let bytes: Uint8Array;
        try {
          bytes = packValue(answer, `the answer to control call ${id}`);
        } catch (e) {
          bytes = packValue(
            { error: { name: 'ProtocolError', message: (e as Error).message, context: {} } },
            'an error',
          );
        }
        if (nc.isClosed()) return;
        for (const c of chunks(bytes, id, ANSWER, maxPayload(nc))) nc.publish(reply, c);
      })();
    },
  });
}

/** Makes calls to servers (serveCalls) and matches their answers, over one inbox. */
export class Caller {
  private readonly inbox: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private readonly assembler: Assembler;
  private nextId = 1;

  constructor(
    private readonly nc: NatsConnection,
    options: { readonly maxBodyBytes?: number } = {},
  ) {
    this.assembler = new Assembler(ANSWER, options.maxBodyBytes ?? MAX_BODY_BYTES);
    this.inbox = `_INBOX.${nc.info?.client_id ?? 0}.${Math.random().toString(36).slice(2)}`;
    this.sub = nc.subscribe(this.inbox, {
      callback: (err, msg) => {
        if (err !== null) return;
        let whole: { id: number; body: Uint8Array } | null;
        try {
          whole = this.assembler.add('', msg.data);
        } catch {
          return;
        }
        if (whole === null) return;
        const call = this.pending.get(whole.id);
        if (call === undefined) return;
        this.pending.delete(whole.id);
        clearTimeout(call.timer);
        try {
          const answer = unpackValue(whole.body, `the answer to control call ${whole.id}`) as {
            ok?: unknown;
            error?: { name: string; message: string; context: ErrorContext };
          };
          if (
            answer !== null &&
            typeof answer === 'object' &&
            'error' in answer &&
            answer.error !== undefined
          ) {
            const { name, message, context } = answer.error;
            call.reject(
              new RemoteError(
                String(message),
                typeof context === 'object' && context !== null ? context : {},
                String(name),
              ),
            );
          } else call.resolve(answer?.ok);
        } catch (e) {
          call.reject(e as Error);
        }
      },
    });
  }

  /** Calls the server on `subject` with `value`; rejects after `timeoutMs` without an answer. */
  call(subject: string, value: unknown, timeoutMs: number, what: string): Promise<unknown> {
    let body: Uint8Array;
    try {
      body = packValue(value, what);
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.nextId++ >>> 0;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CallTimeoutError(`${what}: no answer within ${timeoutMs} ms`, { call: what, timeoutMs }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        for (const c of chunks(body, id, CALL, maxPayload(this.nc)))
          this.nc.publish(subject, c, { reply: this.inbox });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  /** Rejects every pending call with `error` (a lost connection, a dead peer). */
  failAll(error: Error): void {
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      this.pending.delete(id);
      call.reject(error);
    }
  }

  close(): void {
    this.sub.unsubscribe();
  }
}
