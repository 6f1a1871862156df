// The calls a coordinator makes to a node process (Note [rendezvous]), as plain data, and the checks
// a node runs on them: nothing from the network reaches a worker thread unchecked.
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import { BOARD_PHASES, type BoardPhase, type BoardStatus, type HostControl } from '../protocol/control.ts';
import { COORDINATOR } from '../protocol/envelope.ts';
import { SECRET_BYTES } from '../protocol/tcp-listener.ts';

/** Host control methods a coordinator may call on a node's hosts, and nothing else. */
export const CONTROL_METHODS = [
  'setParams',
  'getParams',
  'waiting',
  'stats',
  'reset',
  'setFailpoints',
  'setOptimizer',
  'getOptimizerState',
  'setOptimizerState',
  'setSchedule',
  'setAnomalyMode',
  'setTracing',
  'takeTrace',
] as const satisfies readonly (keyof HostControl)[];
export type ControlMethod = (typeof CONTROL_METHODS)[number];

export interface Assign {
  readonly op: 'assign';
  readonly runtime: string;
  readonly clusterId: number;
  /** The coordinator's name, for a second coordinator's error. */
  readonly coordinator: string;
  /** Global worker ids of this node's hosts, in order. */
  readonly workers: readonly number[];
  readonly secret: Uint8Array;
  readonly data: 'tcp' | 'nats';
  readonly heartbeatMs: number;
  readonly deadAfterMs: number;
  /** The data links are mutual TLS (Note [tcp handshake]). */
  readonly tls: boolean;
  /** The init will name op modules for the hosts to import (Note [source workers]); absent: true. */
  readonly opModules: boolean;
}

export interface Connect {
  readonly op: 'connect';
  readonly runtime: string;
  readonly clusterId: number;
  readonly secret: Uint8Array;
  readonly data: 'tcp' | 'nats';
  /** The host init as a frame (encodeInit). */
  readonly init: Uint8Array;
  /** Pairs of this node's workers that exchange data (a MessageChannel each). */
  readonly localPairs: readonly (readonly [number, number])[];
  /** Per host of the node, in order: its remote peers (Note [node links]). */
  readonly remote: readonly {
    readonly connect: readonly (readonly [number, string, number])[];
    readonly accept: readonly number[];
    readonly peers: readonly number[];
  }[];
  readonly timeoutMs: number;
}

export interface Call {
  readonly op: 'call';
  readonly runtime: string;
  readonly worker: number;
  readonly method: ControlMethod;
  readonly args: unknown[];
  readonly timeoutMs: number;
}

const bad = (what: string, expected: string, found: unknown): never => {
  throw new InputError(`${what}: expected ${expected}, found ${String(found).slice(0, 80)}`, { expected });
};
const isInt = (x: unknown, lo: number, hi: number): x is number =>
  Number.isInteger(x) && (x as number) >= lo && (x as number) <= hi;
const token = (x: unknown, what: string) =>
  typeof x === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(x) ? x : bad(what, 'a subject token', x);
const ms = (x: unknown, what: string) => (isInt(x, 1, 2 ** 31) ? x : bad(what, 'milliseconds', x));
const ints = (x: unknown, what: string, lo: number) =>
  Array.isArray(x) && x.every((w) => isInt(w, lo, 2 ** 20))
    ? (x as number[])
    : bad(what, 'a list of worker ids', x);
const secret = (x: unknown) =>
  x instanceof Uint8Array && x.length === SECRET_BYTES ? x : bad('secret', `${SECRET_BYTES} bytes`, x);
const data = (x: unknown) => (x === 'tcp' || x === 'nats' ? x : bad('data', "'tcp' or 'nats'", x));

export function readAssign(v: Record<string, unknown>): Assign {
  const workers = ints(v.workers, 'assign.workers', 0);
  if (workers.length === 0) bad('assign.workers', 'at least one worker', '[]');
  return {
    op: 'assign',
    runtime: token(v.runtime, 'assign.runtime'),
    clusterId: isInt(v.clusterId, 0, 2 ** 32 - 1)
      ? v.clusterId
      : bad('assign.clusterId', 'a u32', v.clusterId),
    coordinator:
      typeof v.coordinator === 'string'
        ? v.coordinator.slice(0, 256)
        : bad('assign.coordinator', 'a name', v.coordinator),
    workers,
    secret: secret(v.secret),
    data: data(v.data),
    heartbeatMs: ms(v.heartbeatMs, 'assign.heartbeatMs'),
    deadAfterMs: ms(v.deadAfterMs, 'assign.deadAfterMs'),
    tls: typeof v.tls === 'boolean' ? v.tls : bad('assign.tls', 'a boolean', v.tls),
    opModules:
      v.opModules === undefined || typeof v.opModules === 'boolean'
        ? v.opModules !== false
        : bad('assign.opModules', 'a boolean', v.opModules),
  };
}

export function readConnect(v: Record<string, unknown>): Connect {
  if (!(v.init instanceof Uint8Array)) bad('connect.init', 'bytes', v.init);
  if (
    !Array.isArray(v.localPairs) ||
    !v.localPairs.every((p) => Array.isArray(p) && p.length === 2 && p.every((w) => isInt(w, 0, 2 ** 20)))
  )
    bad('connect.localPairs', 'pairs of worker ids', v.localPairs);
  if (!Array.isArray(v.remote)) bad('connect.remote', 'a list', v.remote);
  const remote = (v.remote as unknown[]).map((r, i) => {
    const o = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
    const connect = Array.isArray(o.connect)
      ? o.connect
      : bad(`connect.remote[${i}].connect`, 'a list', o.connect);
    for (const c of connect)
      if (
        !Array.isArray(c) ||
        c.length !== 3 ||
        !isInt(c[0], 0, 2 ** 20) ||
        typeof c[1] !== 'string' ||
        !isInt(c[2], 1, 65535)
      )
        bad(`connect.remote[${i}].connect`, '[worker, host, port] entries', c);
    return {
      connect: connect as [number, string, number][],
      accept: ints(o.accept, `connect.remote[${i}].accept`, COORDINATOR),
      peers: ints(o.peers, `connect.remote[${i}].peers`, COORDINATOR),
    };
  });
  return {
    op: 'connect',
    runtime: token(v.runtime, 'connect.runtime'),
    clusterId: isInt(v.clusterId, 0, 2 ** 32 - 1)
      ? v.clusterId
      : bad('connect.clusterId', 'a u32', v.clusterId),
    secret: secret(v.secret),
    data: data(v.data),
    init: v.init as Uint8Array,
    localPairs: v.localPairs as [number, number][],
    remote,
    timeoutMs: ms(v.timeoutMs, 'connect.timeoutMs'),
  };
}

export function readCall(v: Record<string, unknown>): Call {
  const method = v.method as ControlMethod;
  if (typeof method !== 'string' || !(CONTROL_METHODS as readonly string[]).includes(method))
    bad('call.method', `one of ${CONTROL_METHODS.join(', ')}`, method);
  if (!Array.isArray(v.args) || v.args.length > 1) bad('call.args', 'a list of at most one argument', v.args);
  return {
    op: 'call',
    runtime: token(v.runtime, 'call.runtime'),
    worker: isInt(v.worker, 0, 2 ** 20) ? v.worker : bad('call.worker', 'a worker id', v.worker),
    method,
    args: v.args as unknown[],
    timeoutMs: ms(v.timeoutMs, 'call.timeoutMs'),
  };
}

/** A placement as a short digest: what a host compiled, compared with the coordinator's without shipping it back. */
export function placementDigest(placement: readonly Int32Array[]): string {
  const h = createHash('sha256');
  for (const p of placement) {
    h.update(new Uint8Array(new Int32Array([p.length]).buffer));
    h.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
  }
  return h.digest('hex');
}

/** A status board from a node's heartbeat (Note [status board]), checked; null if it is not one. */
export function readStatus(v: unknown): BoardStatus | null {
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (!BOARD_PHASES.includes(r.phase as BoardPhase)) return null;
  for (const k of ['node', 'replica', 'mb', 'step']) if (!isInt(r[k], -1, 2 ** 31)) return null;
  return {
    phase: r.phase as BoardPhase,
    node: r.node as number,
    replica: r.replica as number,
    mb: r.mb as number,
    step: r.step as number,
  };
}
