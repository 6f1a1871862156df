// A host on a worker thread: its wires are MessagePorts (and, on a node process, TCP connections or
// NATS subjects to what runs elsewhere), its control plane comlink, and a failpoint that stops it
// stops the thread. Everything else is the HostShell's (src/runtime/host-shell.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { expose, transfer } from 'comlink';
import { controlEndpoint, type WorkerControl, type WorkerData } from '../src/protocol/control.ts';
import type { WireTensor } from '../src/protocol/envelope.ts';
import { COORDINATOR } from '../src/protocol/envelope.ts';
import { listenForLinks, openRemoteWires } from '../src/protocol/node-wires.ts';
import { portWire } from '../src/protocol/port-wire.ts';
import type { Halt } from '../src/runtime/host-shell.ts';
import { startWiredHost } from '../src/runtime/wired-host.ts';

const { worker, board } = workerData as WorkerData;

const halt: Halt = {
  exit: () => process.exit(0),
  // Blocks this thread for good; terminate() still stops it.
  block: () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0),
};

/** Tensors out of the worker are transferred, never cloned (each a fresh copy the host does not keep). */
const buffers = (tensors: Iterable<WireTensor>) => [...tensors].map((t) => t.buffer);

const api: Pick<WorkerControl, 'init' | 'listen'> & Partial<WorkerControl> = {
  listen: (at) => listenForLinks(at),
  async init(init, ports, remote) {
    const peers = ports.peers.map(([peer, port]) => [peer, portWire(port)] as const);
    const far = remote === undefined ? [] : await openRemoteWires(worker, remote);
    const coordinator =
      ports.coordinator !== null ? portWire(ports.coordinator) : far.find(([p]) => p === COORDINATOR)?.[1];
    if (coordinator === undefined) throw new Error(`worker ${worker}: no wire to the coordinator`);
    const wires = { coordinator, peers: [...peers, ...far.filter(([p]) => p !== COORDINATOR)] };
    const { control, shell } = await startWiredHost(worker, init, wires, { halt, board });
    Object.assign(api, control, {
      getParams() {
        const params = control.getParams();
        return transfer(params, buffers(params.map(([, t]) => t)));
      },
      getOptimizerState() {
        const state = control.getOptimizerState();
        return transfer(state, buffers(Object.values(state.states).flatMap((s) => Object.values(s))));
      },
    } satisfies Partial<WorkerControl>);
    return shell.host.plan.placement;
  },
};

expose(api, controlEndpoint(parentPort!, { keepListening: true }));
