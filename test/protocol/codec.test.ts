import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.ts';
import {
  decodeHostInputs,
  decodeHostOutputs,
  decodeParams,
  encodeMessage,
  encodeParams,
  Transfers,
} from '../../src/protocol/codec.ts';
import {
  COORDINATOR,
  type HostInput,
  type HostOutput,
  type Limits,
  PROTOCOL_VERSION,
} from '../../src/protocol/envelope.ts';
import { bitwiseEqual, type Tensor, tensor } from '../../src/tensor/tensor.ts';

const limits: Limits = { nodes: 20, replicas: 2, workers: 3 };
const EDGE = 'worker 0 -> worker 1';

const t = (values: number[], shape = [values.length]) => tensor(values, { shape });

function envelope(messages: (HostInput<Tensor> | HostOutput<Tensor>)[], from = 0, edge = EDGE) {
  const tx = new Transfers();
  return {
    v: PROTOCOL_VERSION,
    gen: 3,
    from,
    messages: messages.map((m) => encodeMessage(m, tx, edge)),
  } as Record<string, unknown>;
}

const hostData = (): HostInput<Tensor>[] => [
  { kind: 'activation', step: 4, mb: 1, replica: 0, node: 5, tensor: t([1, 2, 3, 4], [2, 2]) },
  { kind: 'param', step: 4, node: 2, tensor: tensor([0.5, -0], { dtype: 'float64' }) },
  { kind: 'gradient', step: 4, mb: 0, replica: 1, node: 5, consumer: 7, slot: 1, tensor: t([-1, 0.25]) },
];
const fromHost = (raw: unknown) => decodeHostInputs(raw, EDGE, 0, limits);

/** Every path to a key inside a JSON-like value (arrays by index). */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (v === null || typeof v !== 'object' || v instanceof ArrayBuffer) return [];
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  return entries.flatMap(([k, x]) => [[...prefix, k], ...paths(x, [...prefix, k])]);
}

function without(v: unknown, path: (string | number)[]): unknown {
  const copy = structuredClone(v);
  let at = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (Array.isArray(at)) at.splice(last as number, 1);
  else delete at[last];
  return copy;
}

describe('envelope codec', () => {
  it('round-trips every message kind, tensors bit for bit', () => {
    const sent = hostData();
    const keep = sent.map((m) =>
      'tensor' in m
        ? tensor([...m.tensor.data], { shape: [...m.tensor.shape], dtype: m.tensor.dtype })
        : null,
    );
    const got = fromHost(envelope(sent));
    expect(got.gen).toBe(3);
    got.messages.forEach((m, i) => {
      const { tensor: a, ...rest } = m as Extract<HostInput<Tensor>, { tensor: Tensor }>;
      const { tensor: _, ...want } = sent[i] as Extract<HostInput<Tensor>, { tensor: Tensor }>;
      expect(rest).toEqual(want);
      expect(bitwiseEqual(a, keep[i]!)).toBe(true);
    });
    const start = {
      kind: 'start',
      step: 4,
      microbatches: 2,
      shards: [{ replica: 1, mb: 1, bindings: [['B', 3]], scale: 0.25 }],
    };
    const feed = { kind: 'feed', step: 4, mb: 1, replica: 1, node: 0, tensor: t([1, 2, 3], [3, 1]) };
    const fromMain = decodeHostInputs(
      envelope([start, feed] as HostInput<Tensor>[], COORDINATOR),
      'coordinator -> worker 1',
      COORDINATOR,
      limits,
    );
    expect(fromMain.messages[0]).toEqual(start);
    expect(fromMain.messages[1]!.kind).toBe('feed');
  });

  it('round-trips reports', () => {
    const reports: HostOutput<Tensor>[] = [
      { kind: 'loss', step: 1, mb: 0, replica: 1, value: Number.NaN },
      { kind: 'grad', step: 1, node: 3, tensor: t([1, 2]) },
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
    ];
    const got = decodeHostOutputs(envelope(reports, 2), 'worker 2 -> coordinator', 2, limits);
    expect(got.messages.map((m) => m.kind)).toEqual(['loss', 'grad', 'failed', 'failpoint']);
    expect(got.messages[2]).toEqual(reports[2]);
  });

  it.each([
    [
      'a newer protocol version',
      (e: Record<string, unknown>) => ({ ...e, v: PROTOCOL_VERSION + 1 }),
      /protocol version 1 \(the sender speaks a newer protocol\), found 2/,
    ],
    [
      'an older or malformed version',
      (e: Record<string, unknown>) => ({ ...e, v: '1' }),
      /expected protocol version 1, found "1"/,
    ],
    [
      'an unknown kind',
      (e: Record<string, unknown>) => ({
        ...e,
        messages: [{ ...(e.messages as object[])[0], kind: 'activations' }],
      }),
      /kind: one of activation, param, gradient/,
    ],
    [
      'a kind this sender may not send',
      (e: Record<string, unknown>) => ({
        ...e,
        messages: [{ ...(e.messages as object[])[0], kind: 'feed' }],
      }),
      /kind: one of activation/,
    ],
    ['another sender', (e: Record<string, unknown>) => ({ ...e, from: 2 }), /expected from = 0, found 2/],
    [
      'a node out of range',
      (e: Record<string, unknown>) => ({ ...e, messages: [{ ...(e.messages as object[])[0], node: 20 }] }),
      /node: an integer in \[0, 20\), found 20/,
    ],
    [
      'a fractional microbatch',
      (e: Record<string, unknown>) => ({ ...e, messages: [{ ...(e.messages as object[])[0], mb: 0.5 }] }),
      /mb: an integer/,
    ],
    [
      'a replica out of range',
      (e: Record<string, unknown>) => ({ ...e, messages: [{ ...(e.messages as object[])[0], replica: 2 }] }),
      /replica: an integer in \[0, 2\)/,
    ],
    ['an unknown field', (e: Record<string, unknown>) => ({ ...e, extra: 1 }), /unknown field extra/],
    ['not an object', () => 'hello', /expected \{v, gen, from, messages\}, found "hello"/],
  ])('refuses %s with a ProtocolError naming the edge', (_, mutate, why) => {
    const raw = mutate(envelope(hostData()));
    expect(() => fromHost(raw)).toThrow(ProtocolError);
    expect(() => fromHost(raw)).toThrow(why);
    expect(() => fromHost(raw)).toThrow(/^worker 0 -> worker 1: /);
  });

  it('refuses an envelope with any field removed, at any depth (truncated)', () => {
    const full = envelope(hostData());
    for (const path of paths(full)) {
      // Removing a message from the list or a dimension from a shape can leave a valid envelope (or a
      // tensor whose byte length then does not match): every other removal must be refused.
      const raw = without(full, path);
      if (path.length === 2 && path[0] === 'messages') continue;
      expect(() => fromHost(raw), `without ${path.join('.')}`).toThrow(ProtocolError);
    }
  });

  it('refuses a tensor whose buffer is cut at any byte, or too long, naming the tensor and the edge', () => {
    const full = envelope(hostData());
    const buffer = (full.messages as { tensor: { buffer: ArrayBuffer } }[])[0]!.tensor.buffer;
    for (let n = 0; n <= buffer.byteLength + 4; n++) {
      if (n === buffer.byteLength) continue;
      const raw = structuredClone(full) as { messages: { tensor: { buffer: ArrayBuffer } }[] };
      raw.messages[0]!.tensor.buffer = n <= buffer.byteLength ? buffer.slice(0, n) : new ArrayBuffer(n);
      expect(() => fromHost(raw)).toThrow(
        new RegExp(
          `^worker 0 -> worker 1: envelope: message 0: activation: tensor: expected a float32\\[2,2\\] tensor of 16 bytes, found ${n} bytes`,
        ),
      );
    }
  });

  it('refuses a wrong dtype, a negative or fractional dimension, a typed array instead of a buffer', () => {
    const tweak = (f: (tensor: Record<string, unknown>) => void) => {
      const raw = structuredClone(envelope(hostData())) as {
        messages: { tensor: Record<string, unknown> }[];
      };
      f(raw.messages[0]!.tensor);
      return raw;
    };
    expect(() => fromHost(tweak((x) => (x.dtype = 'int32')))).toThrow(/dtype: one of float32, float64/);
    expect(() => fromHost(tweak((x) => (x.shape = [2, -2])))).toThrow(/shape\[1\]/);
    expect(() => fromHost(tweak((x) => (x.shape = [2, 2.5])))).toThrow(/shape\[1\]/);
    expect(() => fromHost(tweak((x) => (x.buffer = new Float32Array(4))))).toThrow(
      /buffer: an ArrayBuffer, found Float32Array\(16 bytes\)/,
    );
    expect(() => fromHost(tweak((x) => (x.buffer = new SharedArrayBuffer(16))))).toThrow(
      /buffer: an ArrayBuffer, found SharedArrayBuffer/,
    );
  });

  it('refuses every random value, and every random mutation of a valid envelope, with a ProtocolError only', () => {
    const valid = envelope(hostData());
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
    const leaves = paths(valid);
    fc.assert(
      fc.property(fc.constantFrom(...leaves), fc.anything(), (path, value) => {
        const raw = structuredClone(valid) as Record<string | number, unknown>;
        let at = raw;
        for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
        at[path[path.length - 1]!] = value;
        const err = decodeOrError(raw);
        // Either refused with a ProtocolError, or still a valid envelope (the value happened to fit).
        if (err !== null) expect(err).toBeInstanceOf(ProtocolError);
      }),
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
    expect(bitwiseEqual(decodeParams(copy, EDGE, limits).get(3)!, w)).toBe(true);
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
