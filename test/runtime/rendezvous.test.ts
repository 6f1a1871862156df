// The rendezvous' pure parts (Note [rendezvous]): announcements from the network checked, versions
// that must match, worker ids shared out in blocks, cluster options refused before anything connects.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { PROTOCOL_VERSION } from '../../src/protocol/envelope.ts';
import { SECRET_BYTES } from '../../src/protocol/tcp-listener.ts';
import { shareWorkers } from '../../src/runtime/nats-join.ts';
import { readAssign } from '../../src/runtime/node-messages.ts';
import {
  type Announcement,
  backflowVersion,
  mismatch,
  nodeMajor,
  readAnnouncement,
  resolveCluster,
} from '../../src/runtime/rendezvous.ts';
import { KERNELS_OFFERED } from '../../src/tensor/default-kernels.ts';

const node = (changes: Partial<Announcement> = {}): Announcement => ({
  id: 'n1',
  name: 'a',
  hosts: 2,
  address: '10.0.0.1',
  port: 7000,
  protocol: PROTOCOL_VERSION,
  backflow: backflowVersion(),
  nodeMajor: nodeMajor(),
  busy: null,
  tls: false,
  kernels: KERNELS_OFFERED,
  ...changes,
});

describe('announcements', () => {
  it('a well-formed one is taken; anything else is dropped', () => {
    expect(readAnnouncement(node())).toEqual(node());
    for (const bad of [
      null,
      [],
      'a',
      { ...node(), extra: 1 },
      { ...node(), id: 'has.dot' },
      { ...node(), hosts: 0 },
      { ...node(), hosts: 1.5 },
      { ...node(), port: 70000 },
      { ...node(), busy: 3 },
      { ...node(), tls: 'yes' },
      { ...node(), kernels: 'wasm simd128' },
      { ...node(), kernels: [] },
      { ...node(), kernels: ['ts', 3] },
      JSON.parse(`{"__proto__": {"polluted": 1}, ${JSON.stringify(node()).slice(1)}`),
    ])
      expect(readAnnouncement(bad)).toBeNull();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('the protocol, backflow, Node major and kernels must match the coordinator', () => {
    expect(mismatch(node(), backflowVersion())).toBeNull();
    expect(mismatch(node({ protocol: PROTOCOL_VERSION + 1 }), backflowVersion())).toMatch(/protocol version/);
    expect(mismatch(node({ backflow: '0.0.1' }), backflowVersion())).toMatch(/backflow 0.0.1/);
    expect(mismatch(node({ nodeMajor: 18 }), backflowVersion())).toMatch(/Node 18/);
    expect(mismatch(node({ kernels: ['wasm relaxed-simd-x'] }), backflowVersion())).toMatch(/kernels/);
    // A node that runs more than the coordinator's kernels joins: its hosts switch to them.
    expect(mismatch(node({ kernels: ['x', ...KERNELS_OFFERED] }), backflowVersion())).toBeNull();
  });
});

describe('worker ids in blocks', () => {
  it('as even as the hosts allow, contiguous, in node order', () => {
    expect(shareWorkers(4, [node(), node()], 'c')).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(shareWorkers(3, [node(), node(), node()], 'c')).toEqual([[0], [1], [2]]);
    expect(shareWorkers(2, [node(), node(), node()], 'c')).toEqual([[0], [1], []]);
    expect(shareWorkers(5, [node({ hosts: 1 }), node({ hosts: 4 })], 'c')).toEqual([[0], [1, 2, 3, 4]]);
  });

  it('more workers than hosts is an InputError naming what each node offers', () => {
    expect(() => shareWorkers(5, [node(), node()], 'c')).toThrow(
      /5 workers, its nodes offer 4 hosts \(a: 2, a: 2\)/,
    );
  });
});

describe('cluster options', () => {
  const ok = { nats: 'nats://127.0.0.1:4222', name: 'c', nodes: 2 };
  it.each([
    [{ ...ok, name: 'a.b' }, /cluster.name/],
    [{ ...ok, name: '*' }, /cluster.name/],
    [{ ...ok, nodes: 0 }, /cluster.nodes/],
    [{ ...ok, nodes: ['a', 'a'] }, /distinct names/],
    [{ ...ok, data: 'udp' }, /cluster.data/],
    [{ ...ok, heartbeatMs: 0 }, /cluster.heartbeatMs/],
    [{ ...ok, heartbeatMs: 500, deadAfterMs: 600 }, /cluster.deadAfterMs/],
    [{ ...ok, nats: 'http://x' }, /servers/],
    [{ ...ok, user: 'u' }, /user and pass together/],
    [{ ...ok, colour: 'red' }, /cluster.colour/],
    [{ ...ok, data: 'nats', dataTls: { caFile: 'a', certFile: 'b', keyFile: 'c' } }, /dataTls/],
  ])('%j is refused', (options, message) => {
    expect(() => resolveCluster(options as never)).toThrow(InputError);
    expect(() => resolveCluster(options as never)).toThrow(message);
  });

  it('defaults', () => {
    expect(resolveCluster(ok)).toMatchObject({
      data: 'tcp',
      joinTimeoutMs: 30_000,
      heartbeatMs: 500,
      deadAfterMs: 5000,
    });
  });
});

describe('assign', () => {
  const assign = (changes: Record<string, unknown> = {}) => ({
    op: 'assign',
    runtime: 'r1',
    clusterId: 7,
    coordinator: 'c',
    workers: [0, 1],
    secret: new Uint8Array(SECRET_BYTES),
    data: 'tcp',
    heartbeatMs: 500,
    deadAfterMs: 5000,
    tls: false,
    ...changes,
  });

  it('says whether op modules will come (Note [source workers]); absent, they may', () => {
    expect(readAssign(assign({ opModules: false })).opModules).toBe(false);
    expect(readAssign(assign({ opModules: true })).opModules).toBe(true);
    expect(readAssign(assign()).opModules).toBe(true);
    expect(() => readAssign(assign({ opModules: 'no' }))).toThrow(/assign.opModules: expected a boolean/);
  });
});
