// The shell every host runs in, driven without threads or timers: a fake outbox, a queue for its
// time slices, and a clock the test moves.
import { describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../src/actor/host.ts';
import { Host } from '../../src/actor/host.ts';
import { referenceStep, splitBatch } from '../../src/autodiff/microbatch.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { initParams } from '../../src/graph/params.ts';
import { compile } from '../../src/partition/plan.ts';
import { COORDINATOR, type HostInput, type HostOutput } from '../../src/protocol/envelope.ts';
import { Link } from '../../src/protocol/link.ts';
import { HostShell, LONG_TASK_BYTES, SLICE_MS } from '../../src/runtime/host-shell.ts';
import { StoragePool } from '../../src/tensor/pool.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { bitwiseEqual, Tensor } from '../../src/tensor/tensor.ts';
import { smallMlp } from '../fixtures/mlp.ts';

const { graph, params, feeds } = smallMlp();

function setup() {
  const plan = compile(graph, { workers: 1 });
  const values = new Map(graph.params().map((p) => [p.id, params[p.name!]!]));
  const host = new Host(plan, 0, values);
  const log: string[] = [];
  const reports: HostOutput<Tensor>[] = [];
  const slices: (() => void)[] = [];
  const blocked: TaskInfo[] = [];
  let clock = 0;
  const shell = new HostShell(
    host,
    {
      send: () => log.push('send'),
      report: (m) => {
        log.push(m.kind);
        reports.push(m);
      },
      flush: () => log.push('flush'),
      flushPeers: () => log.push('flushPeers'),
      close: () => log.push('close'),
    },
    {
      halt: { exit: () => log.push('exit'), block: (task) => blocked.push(task) },
      defer: (run) => slices.push(run),
      // Every reading of the clock is one millisecond later.
      now: () => clock++,
    },
  );
  const start = (step: number) => {
    const shards = splitBatch(graph, feeds, { microbatches: 2 });
    const shardInfo = shards.map((s) => ({
      replica: s.replica,
      mb: s.mb,
      bindings: [...s.bindings],
      scale: s.scale,
    }));
    shell.take({ kind: 'start', step, microbatches: 2, shards: shardInfo }, COORDINATOR);
    for (const s of shards)
      for (const input of graph.inputs()) {
        const m: HostInput<Tensor> = {
          kind: 'feed',
          step,
          mb: s.mb,
          replica: 0,
          node: input.id,
          tensor: s.feeds[input.name!]!,
        };
        shell.take(m, COORDINATOR);
      }
  };
  /** Runs the queued slices until none is left; returns how many tasks each ran. */
  const drain = () => {
    const perSlice: number[] = [];
    while (slices.length > 0) {
      const before = host.stats.tasks;
      slices.shift()!();
      perSlice.push(host.stats.tasks - before);
    }
    return perSlice;
  };
  return { host, shell, log, reports, slices, blocked, start, drain };
}

describe('HostShell', () => {
  it('runs a step to the reference loss and gradients, SLICE_MS of its clock per slice, one slice queued at a time', () => {
    const { start, drain, slices, reports } = setup();
    start(1);
    expect(slices).toHaveLength(1);
    const perSlice = drain();
    // The clock is read once to start a slice and once after each task.
    expect(Math.max(...perSlice)).toBe(SLICE_MS);
    expect(perSlice.length).toBeGreaterThan(2);
    const ref = referenceStep(graph, feeds, params, { microbatches: 2 });
    const losses = reports.filter((r) => r.kind === 'loss');
    expect(losses).toHaveLength(2);
    const grads = reports.filter((r) => r.kind === 'grad');
    expect(grads).toHaveLength(graph.params().length);
    for (const g of grads)
      if (g.kind === 'grad')
        expect(bitwiseEqual(g.tensor, ref.grads[graph.nodes[g.node]!.name!]!)).toBe(true);
    expect(ref.loss).toBe(losses.reduce((sum, l) => sum + (l.kind === 'loss' ? l.value * 0.5 : 0), 0));
  });

  it('flushes its outbox before a step starts and before an update (Note [step arena])', () => {
    const { host, start, drain, log, reports, shell } = setup();
    host.setOptimizer({ name: 'sgd', lr: 0.1 });
    start(1);
    expect(log[0]).toBe('flush');
    drain();
    log.length = 0;
    shell.take({ kind: 'update', step: 1, lr: 0.1, scale: 1 }, COORDINATOR);
    expect(log).toEqual(['flush', 'updated']);
    log.length = 0;
    start(2);
    expect(log[0]).toBe('flush');
    // A failed update is reported as the update's.
    shell.take({ kind: 'update', step: 7, lr: 0.1, scale: 1 }, COORDINATOR);
    const failed = reports.at(-1)!;
    expect(failed.kind === 'failed' && failed.error.context).toMatchObject({
      worker: 0,
      step: 7,
      phase: 'update',
    });
  });

  it("a 'pause' failpoint reports, flushes, then halts; a halted shell takes and runs nothing", () => {
    const { host, start, drain, log, blocked, slices, shell } = setup();
    const matmul = graph.nodes.find((n) => n.op === 'matmul')!;
    host.setFailpoints([{ node: matmul.id, phase: 'forward', mb: 0, action: 'pause' }]);
    start(1);
    drain();
    expect(blocked).toEqual([expect.objectContaining({ node: matmul.id, phase: 'forward', mb: 0 })]);
    expect(log.slice(-2)).toEqual(['failpoint', 'flush']);
    const tasks = host.stats.tasks;
    start(2);
    expect(slices).toHaveLength(0);
    expect(host.stats.tasks).toBe(tasks);
    shell.close();
    expect(log.at(-1)).toBe('close');
  });

  it('a message the host refuses fails the step with a ProtocolError naming the edge, and the shell lives on', () => {
    const { start, reports, shell, drain } = setup();
    start(1);
    shell.take({ kind: 'feed', step: 1, mb: 0, replica: 0, node: 999, tensor: feeds.x! }, COORDINATOR);
    const failed = reports.at(-1)!;
    expect(failed.kind).toBe('failed');
    expect(failed.kind === 'failed' && failed.error.name).toBe('ProtocolError');
    expect(failed.kind === 'failed' && failed.error.message).toMatch(
      /^coordinator -> worker 0: feed %999, replica 0, microbatch 0 was refused by the host/,
    );
    drain();
    expect(reports.filter((r) => r.kind === 'loss')).toHaveLength(2);
  });
});

describe('HostShell long tasks', () => {
  it('sends what is queued for other hosts before a task that makes LONG_TASK_BYTES or more (Note [long tasks])', () => {
    // Worker 0 sends mean(a) to worker 1, then scales b by it: a task of 64x128 floats (32 KiB).
    const b = new GraphBuilder();
    const [s, m] = b.onStage(0, () => {
      const s = b.mean(b.input('a', [4]));
      const scaled = b.mul(b.input('x', [64, 128]), s);
      return [s, b.mean(b.matmul(scaled, b.param('w', [128, 128])))];
    });
    b.output(
      'loss',
      b.onStage(1, () => b.add(s, m)),
    );
    const g = b.build();
    const plan = compile(g, { workers: 2, placement: 'manual' });
    const values = initParams(g, 1);
    const host = new Host(plan, 0, new Map([[g.node('w').id, values['w']!]]));
    const log: string[] = [];
    const slices: (() => void)[] = [];
    const shell = new HostShell(
      host,
      {
        send: (to) => log.push(`send ${to}`),
        report: (m) => log.push(m.kind),
        flush: () => log.push('flush'),
        flushPeers: () => log.push('flushPeers'),
        close: () => {},
      },
      { halt: { exit: () => {}, block: () => {} }, defer: (run) => slices.push(run), now: () => 0 },
    );
    const run = host.run.bind(host);
    host.run = () => {
      log.push(host.nextBytes() >= LONG_TASK_BYTES ? 'long task' : 'task');
      return run();
    };
    const rng = new Rng(2);
    shell.take(
      { kind: 'start', step: 0, microbatches: 1, shards: [{ replica: 0, mb: 0, bindings: [], scale: 1 }] },
      COORDINATOR,
    );
    for (const [name, shape] of [
      ['a', [4]],
      ['x', [64, 128]],
    ] as const)
      shell.take(
        {
          kind: 'feed',
          step: 0,
          mb: 0,
          replica: 0,
          node: g.node(name).id,
          tensor: rng.normalTensor([...shape]),
        },
        COORDINATOR,
      );
    while (slices.length > 0) slices.shift()!();
    // The forward ran in one slice, and the value for worker 1 was sent before the long tasks after it.
    const sent = log.indexOf('send 1');
    expect(sent).toBeGreaterThan(-1);
    expect(log.indexOf('long task', sent)).toBeGreaterThan(sent);
    let unsent = false;
    for (const entry of log) {
      if (entry === 'send 1') unsent = true;
      else if (entry === 'flushPeers') unsent = false;
      else if (entry === 'long task') expect(unsent, log.join(', ')).toBe(false);
    }
    expect(log.filter((e) => e === 'task')).not.toHaveLength(0);
  });
});

describe('HostShell replenishing', () => {
  it('while its host has no ready task, makes again the storages its reports transferred away (Note [replenishing])', () => {
    const b = new GraphBuilder();
    b.output('loss', b.mean(b.matmul(b.input('x', [64, 128]), b.param('w', [128, 128]))));
    const g = b.build();
    const w = g.node('w');
    const pool = new StoragePool();
    const host = new Host(compile(g, { workers: 1 }), 0, new Map([[w.id, initParams(g, 1)['w']!]]), { pool });
    const slices: (() => void)[] = [];
    const log: string[] = [];
    const shell = new HostShell(
      host,
      {
        send: () => {},
        // As a thread's link does when it flushes: the gradient's storage is transferred.
        report: (m) => {
          log.push(m.kind);
          if (m.kind === 'grad') structuredClone(m.tensor.data.buffer, { transfer: [m.tensor.data.buffer] });
        },
        flush: () => {},
        flushPeers: () => {},
        close: () => {},
      },
      {
        halt: { exit: () => {}, block: () => {} },
        pool,
        defer: (run) =>
          slices.push(() => {
            log.push('slice');
            run();
          }),
        now: () => 0,
      },
    );
    const x = new Rng(3).normalTensor([64, 128]);
    const step = (n: number) => {
      shell.take(
        { kind: 'start', step: n, microbatches: 1, shards: [{ replica: 0, mb: 0, bindings: [], scale: 1 }] },
        COORDINATOR,
      );
      shell.take(
        {
          kind: 'feed',
          step: n,
          mb: 0,
          replica: 0,
          node: g.node('x').id,
          tensor: new Tensor(x.dtype, x.shape, x.data.slice()),
        },
        COORDINATOR,
      );
      while (slices.length > 0) slices.shift()!();
    };
    step(1);
    // Step 2's start finds the gradient's storage (128x128 floats) gone: after its tasks, in a
    // deferred turn of its own, the shell has one made for step 3.
    step(2);
    expect(log.slice(log.lastIndexOf('grad'))).toEqual(['grad', 'slice']);
    expect(pool.owed).toBe(0);
    const misses = pool.misses;
    step(3);
    expect(pool.misses).toBe(misses); // every storage of step 3 came from the pool
    expect(pool.hits).toBeGreaterThan(0);
  });
});

describe('HostShell generations', () => {
  /** An envelope of the coordinator's link to worker 0 stamped with `gen`, holding `m`. */
  function envelope(gen: number, m: HostInput<Tensor>): unknown {
    const sent: unknown[] = [];
    const link = new Link(
      { name: 'capture', post: (e) => sent.push(e), postBytes: () => {}, listen: () => {}, close: () => {} },
      COORDINATOR,
      0,
      () => gen,
      () => {},
      (e) => {
        throw e;
      },
    );
    link.push(m);
    link.flush();
    return sent.pop();
  }

  it('an envelope of an older generation is dropped and counted, unread; one of this generation is read', () => {
    const { shell, reports, drain } = setup();
    const from = { peer: COORDINATOR, edgeIn: 'coordinator -> worker 0' } as Link;
    shell.gen = 3;
    const shards = splitBatch(graph, feeds, { microbatches: 2 });
    shell.take(
      {
        kind: 'start',
        step: 1,
        microbatches: 2,
        shards: shards.map((s) => ({
          replica: s.replica,
          mb: s.mb,
          bindings: [...s.bindings],
          scale: s.scale,
        })),
      },
      COORDINATOR,
    );
    const fed = (gen: number) => {
      for (const s of shards)
        for (const input of graph.inputs())
          shell.receive(
            from,
            envelope(gen, {
              kind: 'feed',
              step: 1,
              mb: s.mb,
              replica: 0,
              node: input.id,
              tensor: s.feeds[input.name!]!,
            }),
          );
    };
    const feedCount = shards.length * graph.inputs().length;
    // The step's feeds stamped with generation 2: none reaches the host, so nothing runs.
    fed(2);
    drain();
    expect(shell.dropped).toBe(feedCount);
    expect(reports.filter((r) => r.kind === 'loss' || r.kind === 'failed')).toEqual([]);
    // The same feeds of generation 3: the step runs.
    fed(3);
    drain();
    expect(shell.dropped).toBe(feedCount);
    expect(reports.filter((r) => r.kind === 'loss')).toHaveLength(2);
  });
});
