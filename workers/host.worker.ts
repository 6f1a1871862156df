// The worker shell: decode -> host logic -> perform effects -> encode. No maths here (DESIGN.md 3.1).
import { parentPort, workerData } from 'node:worker_threads';
import { expose, transfer } from 'comlink';
import { Host, type HostEffect } from '../src/actor/host.ts';
import type { StepUpdate } from '../src/actor/messages.ts';
import { toWireError } from '../src/actor/wire-error.ts';
import { ProtocolError } from '../src/errors.ts';
import { compile } from '../src/partition/plan.ts';
import { decodeHostInputs } from '../src/protocol/batch-reader.ts';
import * as codec from '../src/protocol/codec.ts';
import { controlEndpoint, type HostControl, type WorkerData, writeBoard } from '../src/protocol/control.ts';
import { COORDINATOR, type HostInput, type Limits } from '../src/protocol/envelope.ts';
import { Link } from '../src/protocol/link.ts';
import { unpackGraph } from '../src/protocol/packed-graph.ts';
import { portWire } from '../src/protocol/port-wire.ts';
import { importOpModules } from '../src/runtime/user-ops.ts';
import { installPool, StoragePool } from '../src/tensor/pool.ts';
import type { Tensor } from '../src/tensor/tensor.ts';
import { TraceRecorder } from '../src/trace/recorder.ts';

/** Milliseconds of tasks before yielding to the event loop (to receive messages and control calls). */
const SLICE_MS = 3;
const { worker, board } = workerData as WorkerData;
const recorder = new TraceRecorder(worker);

let host: Host;
let limits: Limits;
let coordinator: Link;
const peers = new Map<number, Link>();
let gen = 0;
let step = -1;
let dropped = 0;
let scheduled = false;

/** An envelope arrived: decoded and checked, then every message goes to the host. */
function receive(link: Link, raw: unknown): void {
  writeBoard(board, 'receive', step);
  let m: HostInput<Tensor> | undefined;
  try {
    const envelope = decodeHostInputs(raw, link.edgeIn, link.peer, limits);
    if (envelope.gen < gen) {
      dropped += envelope.messages.length;
      return;
    }
    gen = envelope.gen;
    const fromHost = link !== coordinator;
    for (m of envelope.messages) {
      if (m.kind === 'start') {
        step = m.step;
        // Queued transfers leave before the last step's storages are recycled (Note [step arena]).
        for (const link of links()) link.flush();
        perform(host.startStep(m));
        continue;
      }
      if (m.kind === 'update') {
        applyUpdate(m);
        continue;
      }
      if (fromHost && m.kind !== 'feed')
        recorder.received(link.peer, m.kind, 'mb' in m ? m.mb : -1, m.tensor.bytes);
      perform(host.deliver(m));
    }
  } catch (err) {
    fail(codec.refused(link.edgeIn, m === undefined ? 'an envelope' : codec.describe(m), err, step));
  } finally {
    writeBoard(board, 'idle', step);
  }
  schedule();
}

/** A step's update; a failure is reported as the update's, so the coordinator can tell it from the step's. */
function applyUpdate(u: StepUpdate): void {
  // Queued transfers detach their buffers when flushed: before the update recycles the step's storages.
  for (const link of links()) link.flush();
  try {
    perform(host.applyUpdate(u));
  } catch (err) {
    coordinator.push({
      kind: 'failed',
      step: u.step,
      error: toWireError(err, { worker, step: u.step, phase: 'update' }),
    });
  }
}

/** A failure outside a task (a bad envelope, an unsendable tensor) fails the step, never the worker. */
function fail(err: unknown): void {
  coordinator.push({ kind: 'failed', step, error: toWireError(err, { worker, step }) });
}

function perform(effects: HostEffect[]): void {
  for (const e of effects) {
    if (e.kind === 'send') {
      try {
        const link = peers.get(e.worker);
        if (link === undefined) throw new ProtocolError(`worker ${worker}: no channel to worker ${e.worker}`);
        const m = e.message;
        if (m.kind !== 'feed') recorder.sent(e.worker, m.kind, 'mb' in m ? m.mb : -1, m.tensor.bytes);
        link.push(m);
      } catch (err) {
        fail(err);
      }
    } else if (e.kind === 'report') coordinator.push(e.report);
    else if (e.action === 'exit') process.exit(0);
    else if (e.action === 'hang' || e.action === 'pause') {
      if (e.action === 'pause') {
        coordinator.push({ kind: 'failpoint', action: e.action, task: e.task });
        for (const link of links()) link.flush();
      }
      // Blocks this thread for good; terminate() still stops it.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    }
  }
}

/** Runs ready tasks for one time slice, writing the status board before each, then yields. */
function pump(): void {
  scheduled = false;
  const until = performance.now() + SLICE_MS;
  for (let task = host.next(); task !== null; task = host.next()) {
    writeBoard(board, task.phase, step, task);
    const start = recorder.enabled ? recorder.now() : 0;
    const effects = host.run();
    if (recorder.enabled) recorder.task(task, start, recorder.now(), host.stats.keptBytes);
    perform(effects);
    if (performance.now() >= until) {
      schedule();
      break;
    }
  }
  writeBoard(board, 'idle', step);
  // The links flush their envelopes in a microtask, once for this turn.
}

const links = () => (coordinator === undefined ? [] : [coordinator, ...peers.values()]);

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

/** A control call's answer with its tensors transferred, not cloned. */
const out = <V>({ value, tx }: { value: V; tx: codec.Transfers }) => transfer(value, tx.list);
let edge = '';

const api: HostControl = {
  async init(init) {
    // The graph's own ops are registered before it is unpacked (Note [user ops on workers]).
    await importOpModules(init.ops);
    const plan = compile(unpackGraph(init.graph), init.options);
    const pool = init.pool === null ? null : new StoragePool(init.pool);
    installPool(pool);
    host = new Host(plan, worker, new Map(), { pool });
    limits = { nodes: plan.graph.size, replicas: plan.replicas, workers: plan.workers };
    gen = init.gen;
    coordinator = new Link(portWire(init.coordinator), worker, COORDINATOR, () => gen, receive, fail);
    edge = coordinator.edgeOut;
    for (const [peer, port] of init.peers)
      peers.set(peer, new Link(portWire(port), worker, peer, () => gen, receive, fail));
    // The coordinator checks that this plan is its own (compile is pure, but graphs are big).
    return plan.placement;
  },
  setParams(values) {
    for (const [id, t] of codec.decodeParams(values, coordinator.edgeIn, limits)) host.setParam(id, t);
  },
  getParams: () =>
    out(codec.encodeParams(new Map(host.primaryParamIds().map((id) => [id, host.getParam(id)])), edge)),
  getOptimizerState: () => out(codec.encodeOptimizerState(host.getOptimizerState(), edge, false)),
  setOptimizerState: (state) => host.setOptimizerState(codec.decodeOptimizerState(state, coordinator.edgeIn)),
  setOptimizer: (spec) => host.setOptimizer(spec),
  waiting: () => host.waiting(),
  stats() {
    const copies = links().reduce((n, l) => n + l.copies, 0);
    return { ...host.stats, copies: host.stats.copies + copies, dropped: host.stats.dropped + dropped };
  },
  reset(next) {
    // A newer generation may already have arrived with data (its start resets the host itself).
    if (next <= gen) return;
    gen = next;
    host.reset();
  },
  setFailpoints: (failpoints) => host.setFailpoints(failpoints),
  setSchedule: (actions) => host.setSchedule(actions),
  setAnomalyMode: (on) => host.setAnomalyMode(on),
  setTracing(on) {
    recorder.enabled = on;
    recorder.take();
  },
  takeTrace: () => recorder.take(),
  close() {
    for (const l of links()) l.close();
  },
};

expose(api, controlEndpoint(parentPort!, { keepListening: true }));
