import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import { encodeEnvelope, ROW, ROW_FIELDS } from '../../src/protocol/batch.ts';
import { decodeHostInputs, decodeHostOutputs } from '../../src/protocol/batch-reader.ts';
import { decodeParams, encodeParams } from '../../src/protocol/codec.ts';
import {
  COORDINATOR,
  type Envelope,
  type HostInput,
  type HostOutput,
  type Limits,
  PROTOCOL_VERSION,
} from '../../src/protocol/envelope.ts';
import { type Tensor, tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';

const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
const EDGE = 'worker 0 -> worker 1';

const t = (values: number[], shape = [values.length]) => tensor(values, { shape });

/** An envelope as a receiver gets it (a structured clone with its buffers), as a plain record to tamper with. */
function envelope(
  messages: (HostInput<Tensor> | HostOutput<Tensor>)[],
  from = 0,
  smallTensorBytes?: number,
): Record<string, unknown> & Envelope {
  const { envelope: e, transfer } = encodeEnvelope(messages, 3, from, EDGE, smallTensorBytes);
  return structuredClone(e, { transfer }) as Record<string, unknown> & Envelope;
}

const hostData = (): HostInput<Tensor>[] => [
  { kind: 'activation', step: 4, mb: 1, replica: 0, node: 5, tensor: t([1, 2, 3, 4], [2, 2]) },
  { kind: 'param', step: 4, node: 2, tensor: tensor([0.5, -0], { dtype: 'float64' }) },
  { kind: 'gradient', step: 4, mb: 0, replica: 1, node: 5, consumer: 7, slot: 1, tensor: t([-1, 0.25]) },
];
const fromHost = (raw: unknown) => decodeHostInputs(raw, EDGE, 0, limits);
const copy = (m: HostInput<Tensor>[]) =>
  m.map((x) =>
    'tensor' in x
      ? { ...x, tensor: tensor([...x.tensor.data], { shape: [...x.tensor.shape], dtype: x.tensor.dtype }) }
      : x,
  );

/** The same envelope with field `field` of message `k`'s row set to `value`. */
function withField(e: Envelope, k: number, field: number, value: number): Envelope {
  const head = e.head.slice();
  let i = 0;
  for (let j = 0; j < k; j++) i += ROW_FIELDS + head[i + ROW.RANK]!;
  head[i + field] = value;
  return { ...e, head };
}

function expectSame(got: readonly HostInput<Tensor>[], want: readonly HostInput<Tensor>[]): void {
  expect(got).toHaveLength(want.length);
  got.forEach((m, i) => {
    const { tensor: a, ...rest } = m as Extract<HostInput<Tensor>, { tensor: Tensor }>;
    const { tensor: b, ...expected } = want[i] as Extract<HostInput<Tensor>, { tensor: Tensor }>;
    expect(rest).toEqual(expected);
    expectBitwise(a, b);
    // Each tensor owns a fresh buffer (Note [owned storage]).
    expect(a.data.byteOffset).toBe(0);
    expect(a.data.byteLength).toBe(a.data.buffer.byteLength);
  });
}

describe('envelope codec', () => {
  it.each([
    ['copied into the payload', undefined],
    ['transferred one buffer each', 0],
  ])('round-trips every message kind, tensors bit for bit (%s)', (_, small) => {
    const want = copy(hostData());
    const got = fromHost(envelope(hostData(), 0, small));
    expect(got.gen).toBe(3);
    expectSame(got.messages, want);
    const start = {
      kind: 'start',
      step: 4,
      microbatches: 2,
      shards: [{ replica: 1, mb: 1, bindings: [['B', 3]], scale: 0.25 }],
    };
    const feed = { kind: 'feed', step: 4, mb: 1, replica: 1, node: 0, tensor: t([1, 2, 3], [3, 1]) };
    const update = { kind: 'update', step: 4, lr: 0.125, scale: 1 };
    const fromMain = decodeHostInputs(
      envelope([start, feed, update] as HostInput<Tensor>[], COORDINATOR, small),
      'coordinator -> worker 1',
      COORDINATOR,
      limits,
    );
    expect(fromMain.messages[0]).toEqual(start);
    expectSame(fromMain.messages.slice(1, 2), [
      { ...feed, tensor: t([1, 2, 3], [3, 1]) } as HostInput<Tensor>,
    ]);
    expect(fromMain.messages[2]).toEqual(update);
  });

  it.each([
    [{ kind: 'update', step: 4, lr: Number.NaN, scale: 1 }, /lr: a finite number/],
    [{ kind: 'update', step: 4, lr: 0.1, scale: '1' }, /scale: a finite number/],
    [{ kind: 'update', step: -1, lr: 0.1, scale: 1 }, /step/],
    [{ kind: 'update', step: 4, lr: 0.1 }, /expected \{kind, step, lr, scale\}/],
  ])('refuses a malformed update from the coordinator: %j', (update, why) => {
    const raw = envelope([update] as unknown as HostInput<Tensor>[], COORDINATOR);
    const decode = () => decodeHostInputs(raw, 'coordinator -> worker 1', COORDINATOR, limits);
    expect(decode).toThrow(ProtocolError);
    expect(decode).toThrow(why);
  });

  it("round-trips a start's local update rule and a host's loss for another host (Note [local update]); refuses a bad rule", () => {
    const start = {
      kind: 'start',
      step: 4,
      microbatches: 1,
      shards: [{ replica: 0, mb: 0, bindings: [], scale: 1 }],
      update: { lr: 0.5, clipNorm: 2 },
    };
    const decode = (m: unknown) =>
      decodeHostInputs(envelope([m] as HostInput<Tensor>[], COORDINATOR), EDGE, COORDINATOR, limits);
    expect(decode(start).messages[0]).toEqual(start);
    expect(() => decode({ ...start, update: { lr: -1 } })).toThrow(/update.lr: a finite number >= 0/);
    expect(() => decode({ ...start, update: { lr: 1, clipNorm: 0 } })).toThrow(/update.clipNorm/);
    expect(() => decode({ ...start, update: { lr: 1, scale: 1 } })).toThrow(/unknown field scale/);
    const loss = { kind: 'loss', step: 4, mb: 0, replica: 1, value: Number.POSITIVE_INFINITY } as const;
    expect(fromHost(envelope([loss])).messages[0]).toEqual(loss);
  });

  it('round-trips a credit, a row with no value (Note [activation credits]), and refuses one with a value', () => {
    const credit = { kind: 'credit', step: 4, mb: 3, stage: 2 } as const;
    expect(fromHost(envelope([credit, ...hostData()])).messages[0]).toEqual(credit);
    const e = envelope([credit]);
    expect(() => fromHost(withField(e, 0, ROW.BYTES, 8))).toThrow(/a row with no value/);
    expect(() => fromHost(withField(e, 0, ROW.DTYPE, 0))).toThrow(/a row with no value/);
    expect(() => fromHost(withField(e, 0, ROW.NODE, 20))).toThrow(/stage: an integer in \[0, 20\)/);
    // The coordinator neither sends nor takes credits.
    expect(() => decodeHostInputs(envelope([credit], COORDINATOR), EDGE, COORDINATOR, limits)).toThrow(
      ProtocolError,
    );
    expect(() => decodeHostOutputs(envelope([credit]), EDGE, 0, limits)).toThrow(ProtocolError);
  });

  it('round-trips reports', () => {
    const reports: HostOutput<Tensor>[] = [
      { kind: 'loss', step: 1, mb: 0, replica: 1, value: Number.NaN },
      { kind: 'grad', step: 1, node: 3, tensor: t([1, 2]) },
      { kind: 'gradNorm', step: 1, node: 4, sumsq: -0 },
      {
        kind: 'failed',
        step: 1,
        error: {
          name: 'E',
          message: 'm',
          stack: 's',
          code: 'EX',
          fields: { a: 1 },
          context: { worker: 2, node: 'h', phase: 'backward' },
        },
      },
      {
        kind: 'failpoint',
        action: 'pause',
        task: { phase: 'backward', node: 4, stage: 1, replica: 0, mb: 1 },
      },
      { kind: 'anomaly', step: 1, node: 6, mb: 1, replica: 0, phase: 'backward' },
      { kind: 'updated', step: 1 },
    ];
    const got = decodeHostOutputs(envelope(reports, 2), 'worker 2 -> coordinator', 2, limits);
    expect(got.messages.map((m) => m.kind)).toEqual([
      'loss',
      'grad',
      'gradNorm',
      'failed',
      'failpoint',
      'anomaly',
      'updated',
    ]);
    expect(got.messages[5]).toEqual(reports[5]);
    expect(got.messages[6]).toEqual(reports[6]);
    expect(got.messages[0]).toEqual(reports[0]);
    expect(Object.is((got.messages[2] as { sumsq: number }).sumsq, -0)).toBe(true);
    expect(got.messages[3]).toEqual(reports[3]);
    expect(got.messages[4]).toEqual(reports[4]);
  });

  const field = (k: number, f: number, v: number) => (e: Envelope) => withField(e, k, f, v);
  it.each([
    [
      'a newer protocol version',
      (e: Envelope) => ({ ...e, v: PROTOCOL_VERSION + 1 }),
      new RegExp(
        `protocol version ${PROTOCOL_VERSION} \\(the sender speaks a newer protocol\\), found ${PROTOCOL_VERSION + 1}`,
      ),
    ],
    [
      'an older or malformed version',
      (e: Envelope) => ({ ...e, v: '2' }),
      new RegExp(`expected protocol version ${PROTOCOL_VERSION}, found "2"`),
    ],
    [
      'an unknown kind',
      field(0, ROW.KIND, 99),
      /message 0: expected kind: one of activation, param, gradient, loss, credit, found 99/,
    ],
    [
      'a kind this sender may not send',
      field(0, ROW.KIND, 1),
      /message 0: expected kind: one of activation, param, gradient, loss, credit, found "feed"/,
    ],
    ['another sender', (e: Envelope) => ({ ...e, from: 2 }), /expected from = 0, found 2/],
    [
      'a node out of range',
      field(0, ROW.NODE, 20),
      /message 0: activation: expected node: an integer in \[0, 20\), found 20/,
    ],
    ['a negative microbatch', field(0, ROW.MB, -1), /message 0: activation: expected mb: an integer/],
    [
      'a replica out of range',
      field(2, ROW.REPLICA, 2),
      /message 2: gradient: expected replica: an integer in \[0, 2\)/,
    ],
    ['a consumer out of range', field(2, ROW.CONSUMER, -3), /message 2: gradient: expected consumer/],
    ['a slot out of range', field(2, ROW.SLOT, 1 << 16), /message 2: gradient: expected slot/],
    ['a negative step', field(1, ROW.STEP, -1), /message 1: param: expected step/],
    [
      'an unknown dtype',
      field(0, ROW.DTYPE, 7),
      /message 0: activation: expected dtype: 0 \(float32\) or 1 \(float64\), found 7/,
    ],
    ['a negative dimension', field(0, ROW_FIELDS + 1, -2), /expected shape\[1\]: an integer/],
    ['a rank out of range', field(0, ROW.RANK, 33), /expected rank: an integer in \[0, 33\)/],
    [
      'bytes that do not match the shape',
      field(0, ROW.BYTES, 12),
      /message 0: activation: expected a float32\[2,2\] tensor of 16 bytes, found 12 bytes/,
    ],
    [
      'a payload offset out of order',
      field(1, ROW.AT, 0),
      /message 1: param: expected payload offset 16, found 0/,
    ],
    ['a count too large', (e: Envelope) => ({ ...e, count: 4 }), /truncated|count/],
    ['a count too small', (e: Envelope) => ({ ...e, count: 2 }), /trailing integers/],
    [
      'trailing payload bytes',
      (e: Envelope) => ({ ...e, payload: new ArrayBuffer(e.payload.byteLength + 8) }),
      /trailing bytes/,
    ],
    ['an unknown field', (e: Envelope) => ({ ...e, extra: 1 }), /unknown field extra/],
    [
      'a head that is not an Int32Array',
      (e: Envelope) => ({ ...e, head: new Uint32Array(e.head) }),
      /head: an Int32Array, found Uint32Array/,
    ],
    [
      'a shared head',
      (e: Envelope) => ({ ...e, head: new Int32Array(new SharedArrayBuffer(e.head.byteLength)) }),
      /head: an Int32Array/,
    ],
    [
      'a payload that is a typed array',
      (e: Envelope) => ({ ...e, payload: new Uint8Array(e.payload) }),
      /payload: an ArrayBuffer/,
    ],
    [
      'an object where a column was',
      (e: Envelope) => ({ ...e, objects: [{ kind: 'start' }] }),
      /trailing objects/,
    ],
    [
      'not an object',
      () => 'hello',
      /expected \{v, gen, from, count, head, payload, buffers, objects, ring\?\}, found "hello"/,
    ],
  ])('refuses %s with a ProtocolError naming the edge', (_, mutate, why) => {
    const raw = (mutate as (e: Envelope) => unknown)(envelope(hostData()));
    expect(() => fromHost(raw)).toThrow(ProtocolError);
    expect(() => fromHost(raw)).toThrow(why);
    expect(() => fromHost(raw)).toThrow(/^worker 0 -> worker 1: envelope: /);
  });

  it('refuses an envelope without any one of its fields', () => {
    const full = envelope(hostData());
    for (const key of Object.keys(full)) {
      const { [key]: _, ...raw } = full;
      expect(() => fromHost(raw), `without ${key}`).toThrow(new RegExp(`missing ${key}`));
    }
  });

  it('refuses a head or a payload cut at any point, and a head with extra integers (truncated or trailing)', () => {
    for (const small of [undefined, 0]) {
      const full = envelope(hostData(), 0, small);
      for (let n = 0; n < full.head.length + 3; n++) {
        if (n === full.head.length) continue;
        const head =
          n < full.head.length
            ? full.head.slice(0, n)
            : Int32Array.from([...full.head, ...new Array(n - full.head.length).fill(0)]);
        expect(() => fromHost({ ...full, head }), `head of ${n}`).toThrow(ProtocolError);
      }
      for (let n = 0; n < full.payload.byteLength; n++)
        expect(() => fromHost({ ...full, payload: full.payload.slice(0, n) }), `payload of ${n}`).toThrow(
          ProtocolError,
        );
    }
  });

  it('refuses a transferred tensor whose buffer is cut at any byte, or too long, naming the tensor and the edge', () => {
    const full = envelope(hostData(), 0, 0);
    const buffer = full.buffers[0]!;
    for (let n = 0; n <= buffer.byteLength + 4; n++) {
      if (n === buffer.byteLength) continue;
      const raw = {
        ...full,
        buffers: [n <= buffer.byteLength ? buffer.slice(0, n) : new ArrayBuffer(n), ...full.buffers.slice(1)],
      };
      expect(() => fromHost(raw)).toThrow(
        new RegExp(
          `^worker 0 -> worker 1: envelope: message 0: activation: expected a tensor of 16 bytes, found ${n} bytes`,
        ),
      );
    }
    expect(() => fromHost({ ...full, buffers: [new Float32Array(4), ...full.buffers.slice(1)] })).toThrow(
      /expected an ArrayBuffer, found Float32Array\(16 bytes\)/,
    );
    expect(() => fromHost({ ...full, buffers: [buffer, buffer, full.buffers[2]] })).toThrow(
      /each buffer once/,
    );
    expect(() => fromHost({ ...full, buffers: full.buffers.slice(1) })).toThrow(ProtocolError);
    expect(() => fromHost({ ...full, buffers: [...full.buffers, new ArrayBuffer(8)] })).toThrow(
      /trailing buffers/,
    );
  });

  it('refuses every random value, every random head and payload, and every random change of a valid envelope, with a ProtocolError only', () => {
    const decodeOrError = (raw: unknown) => {
      try {
        fromHost(raw);
        return null;
      } catch (err) {
        return err;
      }
    };
    fc.assert(
      fc.property(
        fc.anything({
          withBigInt: true,
          withTypedArray: true,
          withMap: true,
          withSet: true,
          withNullPrototype: true,
        }),
        (raw) => {
          expect(decodeOrError(raw)).toBeInstanceOf(ProtocolError);
        },
      ),
      { numRuns: 2000 },
    );
    const valid = envelope(hostData());
    // Random bytes as the columns: refused (a valid envelope by chance is astronomically unlikely).
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { maxLength: 64 }),
        fc.nat(8),
        (ints, count) => {
          expect(decodeOrError({ ...valid, count, head: Int32Array.from(ints) })).toBeInstanceOf(
            ProtocolError,
          );
        },
      ),
      { numRuns: 2000 },
    );
    // One integer of the head changed: refused, or still a valid envelope (the value happened to fit).
    fc.assert(
      fc.property(
        fc.nat(valid.head.length - 1),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        (i, value) => {
          const head = valid.head.slice();
          head[i] = value;
          const err = decodeOrError({ ...valid, head });
          if (err !== null) expect(err).toBeInstanceOf(ProtocolError);
        },
      ),
      { numRuns: 2000 },
    );
    // Any envelope field replaced by anything.
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(valid)),
        fc.anything({ withTypedArray: true }),
        (key, value) => {
          const err = decodeOrError({ ...valid, [key]: value });
          if (err !== null) expect(err).toBeInstanceOf(ProtocolError);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('checks reports: a failed report needs an error with a name, a message and a worker', () => {
    const bad = envelope(
      [
        {
          kind: 'failed',
          step: 1,
          error: { name: 'E', message: 'm', context: { worker: 9 } },
        } as HostOutput<Tensor>,
      ],
      2,
    );
    expect(() => decodeHostOutputs(bad, 'worker 2 -> coordinator', 2, limits)).toThrow(
      /error.context.worker: an integer in \[-1, 3\)/,
    );
    const noMessage = envelope(
      [
        {
          kind: 'failed',
          step: 1,
          error: { name: 'E', context: { worker: 1 } },
        } as unknown as HostOutput<Tensor>,
      ],
      2,
    );
    expect(() => decodeHostOutputs(noMessage, 'worker 2 -> coordinator', 2, limits)).toThrow(ProtocolError);
    const pause = envelope(
      [
        {
          kind: 'failpoint',
          action: 'nap',
          task: { phase: 'backward', node: 1, replica: 0, mb: 0 },
        } as unknown as HostOutput<Tensor>,
      ],
      2,
    );
    expect(() => decodeHostOutputs(pause, 'worker 2 -> coordinator', 2, limits)).toThrow(/action: one of/);
  });

  it('parameters travel as copies: the caller keeps its tensors', () => {
    const w = t([1, 2, 3, 4], [2, 2]);
    const { value: list, tx } = encodeParams(new Map([[3, w]]), EDGE);
    expect(tx.list).toHaveLength(1);
    structuredClone(list, { transfer: tx.list });
    expect(w.data.byteLength).toBe(16);
    expect([...w.data]).toEqual([1, 2, 3, 4]);
    const copy = encodeParams(new Map([[3, w]]), EDGE).value;
    expectBitwise(decodeParams(copy, EDGE, limits).get(3)!, w);
    expect(() =>
      decodeParams(
        [
          [3, copy[0]![1]],
          [3, copy[0]![1]],
        ],
        EDGE,
        limits,
      ),
    ).toThrow(/each parameter once/);
    expect(() => decodeParams({}, EDGE, limits)).toThrow(ProtocolError);
  });
});
