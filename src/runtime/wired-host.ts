// A host whose messages travel over wires (a worker thread's ports, the loopback's bytes, later a node
// process's sockets): built from its init, run by a HostShell, controlled through HostControl.
import { Host, type Message } from '../actor/host.ts';
import type { Credit } from '../actor/messages.ts';
import { ProtocolError } from '../errors.ts';
import { compile } from '../partition/plan.ts';
import { planFromColumns } from '../partition/plan-columns.ts';
import * as codec from '../protocol/codec.ts';
import type { HostControl, HostInit } from '../protocol/control.ts';
import { COORDINATOR, type HostOutput, type Limits } from '../protocol/envelope.ts';
import { Link } from '../protocol/link.ts';
import { unpackGraph } from '../protocol/packed-graph.ts';
import type { Wire } from '../protocol/wire.ts';
import { selectKernels } from '../tensor/default-kernels.ts';
import { installedPool, installPool, POOL_MAX_BYTES, StoragePool } from '../tensor/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { type Halt, HostShell, type Outbox } from './host-shell.ts';
import { importOpModules } from './user-ops.ts';

/** A host's wires: one to the coordinator, one per worker it exchanges data with. */
export interface HostWires {
  readonly coordinator: Wire;
  readonly peers: readonly (readonly [number, Wire])[];
}

/** A shell's links, one per wire: its outbox. */
class ShellLinks implements Outbox {
  readonly coordinator: Link;
  private readonly peers = new Map<number, Link>();

  constructor(
    private readonly worker: number,
    wires: HostWires,
    shell: () => HostShell,
  ) {
    const gen = () => shell().gen;
    const receive = (link: Link, raw: unknown) => shell().receive(link, raw);
    const fail = (error: ProtocolError) => shell().fail(error);
    this.coordinator = new Link(wires.coordinator, worker, COORDINATOR, gen, receive, fail);
    for (const [peer, wire] of wires.peers)
      this.peers.set(peer, new Link(wire, worker, peer, gen, receive, fail));
    // Note [step marks]: a trace times the posts.
    for (const link of [this.coordinator, ...this.peers.values()])
      link.aroundPost = (post) => shell().post(link.peer, post);
  }

  send(worker: number, message: Message | Credit): void {
    const link = this.peers.get(worker);
    if (link === undefined) throw new ProtocolError(`worker ${this.worker}: no wire to worker ${worker}`);
    link.push(message);
  }

  report(message: HostOutput<Tensor>, hold = false): void {
    this.coordinator.push(message, hold);
  }

  flush(): void {
    this.coordinator.flush();
    this.flushPeers();
  }

  flushPeers(): void {
    for (const link of this.peers.values()) link.flush();
  }

  /** Envelopes of another runtime the wires dropped (Note [stream framing], Note [NATS wire order]). */
  get wireDropped(): number {
    let n = this.coordinator.wire.dropped ?? 0;
    for (const link of this.peers.values()) n += link.wire.dropped ?? 0;
    return n;
  }

  /** Large tensors the links copied before sending (not owning their buffer, or twice in one envelope). */
  get copies(): number {
    let n = this.coordinator.copies;
    for (const link of this.peers.values()) n += link.copies;
    return n;
  }

  close(): void {
    this.coordinator.close();
    for (const link of this.peers.values()) link.close();
  }
}

export interface WiredHost {
  readonly shell: HostShell;
  readonly control: HostControl;
  /** The placement of the plan the host compiled, for the coordinator to compare with its own. */
  readonly placement: readonly Int32Array[];
}

/**
 * Imports the op modules (Note [user ops on workers]), rebuilds the plan from the init (the
 * coordinator's, checked, where the init carries it: Note [shipped plan]; else compiled from its
 * options, compile being pure), and starts the host's shell over its wires.
 */
export async function startWiredHost(
  worker: number,
  init: HostInit,
  wires: HostWires,
  options: { readonly halt: Halt; readonly board?: Int32Array },
): Promise<WiredHost> {
  await importOpModules(init.ops);
  selectKernels(init.kernels, worker);
  const g = unpackGraph(init.graph);
  const plan = init.plan !== undefined ? planFromColumns(g, init.plan) : compile(g, init.options);
  // The pool's free storages never outgrow the budget (Note [memory budget]).
  const pool =
    init.pool === null
      ? null
      : new StoragePool({
          ...init.pool,
          maxBytes: Math.min(init.pool.maxBytes ?? POOL_MAX_BYTES, init.limits.memoryBytes),
        });
  const host = new Host(plan, worker, new Map(), { pool, limits: init.limits });
  let shell: HostShell | null = null;
  // Note [tensors beside the frame]: a TCP wire recycles large tensors through the host's pool.
  if (pool !== null) for (const w of [wires.coordinator, ...wires.peers.map(([, w]) => w)]) w.usePool?.(pool);
  const links = new ShellLinks(worker, wires, () => shell!);
  shell = new HostShell(host, links, { ...options, pool });
  shell.gen = init.gen;
  return { shell, control: hostControl(shell, links, pool), placement: plan.placement };
}

/** The control API of a wired host: tensors in and out as wire tensors, checked on the way in. */
function hostControl(shell: HostShell, links: ShellLinks, pool: StoragePool | null): HostControl {
  const { host } = shell;
  const limits: Limits = {
    nodes: host.plan.graph.size,
    replicas: host.plan.replicas,
    workers: host.plan.workers,
  };
  const edgeIn = links.coordinator.edgeIn;
  const edgeOut = links.coordinator.edgeOut;
  /** What touches the host's values runs with its pool installed (Note [step arena]). */
  const withPool = <R>(f: () => R): R => {
    const outer = installedPool();
    installPool(pool);
    try {
      return f();
    } finally {
      installPool(outer);
    }
  };
  return {
    setParams: (values) =>
      withPool(() => {
        for (const [id, t] of codec.decodeParams(values, edgeIn, limits)) host.setParam(id, t);
      }),
    getParams: () =>
      codec.encodeParams(new Map(host.primaryParamIds().map((id) => [id, host.getParam(id)])), edgeOut).value,
    getOptimizerState: () => codec.encodeOptimizerState(host.getOptimizerState(), edgeOut, false).value,
    setOptimizerState: (state) =>
      withPool(() => host.setOptimizerState(codec.decodeOptimizerState(state, edgeIn))),
    setOptimizer: (spec) => host.setOptimizer(spec),
    waiting: () => host.waiting(),
    stats() {
      const s = host.stats;
      return {
        ...s,
        copies: s.copies + links.copies,
        dropped: s.dropped + shell.dropped + links.wireDropped,
      };
    },
    reset(next) {
      // A newer generation may already have arrived with data (its start resets the host itself).
      if (next > shell.gen) {
        shell.gen = next;
        withPool(() => host.reset());
      }
      return host.lastUpdate;
    },
    setFailpoints: (failpoints) => host.setFailpoints(failpoints),
    setSchedule: (actions) => host.setSchedule(actions),
    setAnomalyMode: (on) => host.setAnomalyMode(on),
    setTracing(on) {
      shell.recorder.enabled = on;
      shell.recorder.take();
    },
    takeTrace: () => shell.recorder.take(),
    close: () => shell.close(),
  };
}
