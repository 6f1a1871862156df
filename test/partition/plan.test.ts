import { describe, expect, it } from 'vitest';
import { InputError, ScheduleError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { label } from '../../src/graph/graph.ts';
import { type CompileOptions, compile, type Plan, paramWorkers } from '../../src/partition/plan.ts';
import { printPlan } from '../../src/partition/print.ts';
import { deepMlp, mlp } from '../support/models.ts';
import { randomGraph } from '../support/random-graph.ts';

describe('compile', () => {
  it('counts one gradient contribution per differentiable consumer edge', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 3]);
    const w = b.param('w', [3, 3]);
    const h = b.matmul(x, w);
    const t = b.tanh(h);
    // h feeds two consumers, t feeds mul twice (two slots), x needs no gradient.
    const loss = b.output('loss', b.mean(b.add(b.mul(t, t), h)));
    const plan = compile(b.build(), { workers: 1 });
    const expected = plan.grad.expected;
    expect(expected[h.id]).toBe(2);
    expect(expected[t.id]).toBe(2);
    expect(expected[w.id]).toBe(1);
    expect(expected[x.id]).toBe(0);
    expect(expected[loss.id]).toBe(0);
  });

  it('places parameters: sharded by bytes largest first, on replica 0, or a copy per replica (Note [parameter placement])', () => {
    const b = new GraphBuilder();
    let h = b.input('x', ['B', 8]);
    const sizes = [
      [8, 64],
      [64, 32],
      [32, 32],
      [32, 4],
    ] as const;
    for (const [i, [m, n]] of sizes.entries()) h = b.matmul(h, b.param(`w${i}`, [m, n]));
    b.output('loss', b.mean(h));
    const graph = b.build();
    const ownerOf = (plan: ReturnType<typeof compile>) =>
      Object.fromEntries(graph.params().map((p) => [p.name, plan.placement[0]![p.id]]));
    // Largest first: w1 (8 KiB) -> 0, w2 (4 KiB) -> 1, w0 (2 KiB) -> 1, w3 (512 B) -> 1 (6.5 KiB against 8).
    // Sharded is the default.
    const sharded = compile(graph, { workers: 2, replicas: 2 });
    expect(ownerOf(sharded)).toEqual({ w0: 1, w1: 0, w2: 1, w3: 1 });
    // Every replica sees the same owner; compile is pure.
    for (const p of graph.params()) expect(sharded.placement[1]![p.id]).toBe(sharded.placement[0]![p.id]);
    expect(ownerOf(compile(graph, { workers: 2, replicas: 2, paramPlacement: 'sharded' }))).toEqual(
      ownerOf(sharded),
    );
    expect(ownerOf(compile(graph, { workers: 2, replicas: 2, paramPlacement: 'replica-0' }))).toEqual({
      w0: 0,
      w1: 0,
      w2: 0,
      w3: 0,
    });
    // With 2 stages per replica, owners stay with their stage: worker 0 or 2 for stage 0, 1 or 3 for stage 1.
    const staged = compile(graph, { workers: 4, replicas: 2, placement: 'stages' });
    for (const p of graph.params()) expect(staged.placement[0]![p.id]! % 2).toBe(staged.stageOf[p.id]!);
    // Replicated: a copy per replica, on that replica's worker for the stage; replica 0's first.
    const replicated = compile(graph, {
      workers: 4,
      replicas: 2,
      placement: 'stages',
      paramPlacement: 'replicated',
    });
    for (const p of graph.params()) {
      const stage = replicated.stageOf[p.id]!;
      expect([replicated.placement[0]![p.id], replicated.placement[1]![p.id]]).toEqual([stage, 2 + stage]);
      expect(paramWorkers(replicated, p.id)).toEqual([stage, 2 + stage]);
      expect(paramWorkers(sharded, p.id)).toEqual([sharded.placement[0]![p.id]]);
    }
    expect(() =>
      compile(graph, { workers: 2, replicas: 2, paramPlacement: 'everywhere' as 'sharded' }),
    ).toThrow(/paramPlacement must be one of sharded, replicated, replica-0, found "everywhere"/);
  });

  it('per-node spreads nodes round-robin over every worker', () => {
    const { graph } = mlp();
    const plan = compile(graph, { workers: 4, placement: 'per-node' });
    const used = new Set(Array.from(plan.placement[0]!).filter((w) => w >= 0));
    expect([...used].sort()).toEqual([0, 1, 2, 3]);
    expect(plan.crossEdges.length).toBeGreaterThan(10);
  });

  it('stages are contiguous in topological order and balanced by estimated cost', () => {
    const { graph } = randomGraph(3, 60);
    const plan = compile(graph, { workers: 3, placement: 'stages' });
    const ops = graph.nodes.filter(
      (n) => plan.placement[0]![n.id]! >= 0 && !['input', 'param', 'const'].includes(n.op),
    );
    const workers = ops.map((n) => plan.placement[0]![n.id]!);
    for (let i = 1; i < workers.length; i++) expect(workers[i]!).toBeGreaterThanOrEqual(workers[i - 1]!);
    expect(new Set(workers).size).toBe(3);
  });

  it('min-comm crosses no more bytes than balanced stages and keeps the balance bound', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { graph } = randomGraph(seed, 80, 4);
      const stages = compile(graph, { workers: 4, placement: 'stages' });
      const minComm = compile(graph, { workers: 4, placement: 'min-comm', imbalance: 0.2 });
      const bytes = (p: typeof stages) => p.crossEdges.reduce((s, e) => s + e.bytes, 0);
      expect(bytes(minComm)).toBeLessThanOrEqual(bytes(stages));
      const total = minComm.load.reduce((a, b) => a + b, 0);
      const maxStages = Math.max(...stages.load);
      for (const l of minComm.load)
        expect(l).toBeLessThanOrEqual(Math.max(maxStages, (total / 4) * 1.2) + 1e-6);
    }
  });

  it('manual placement follows the builder annotations', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['B', 4]);
    const h = b.onStage(0, () => b.tanh(b.matmul(x, b.param('w1', [4, 4]))));
    const out = b.onStage(1, () => b.mean(b.square(b.matmul(h, b.param('w2', [4, 4])))));
    b.output('loss', out);
    const plan = compile(b.build(), { workers: 2, placement: 'manual' });
    expect(plan.placement[0]![h.id]).toBe(0);
    expect(plan.placement[0]![out.id]).toBe(1);
    expect(plan.placement[0]![b.node('w2').id]).toBe(1);
    expect(() => compile(b.build(), { workers: 1, placement: 'manual' })).toThrow(/annotated for stage 1/);
  });

  it('replicas get their own workers; a parameter placed once lives on one of them', () => {
    const { graph } = mlp();
    const plan = compile(graph, {
      workers: 4,
      replicas: 2,
      placement: 'stages',
      paramPlacement: 'replica-0',
    });
    const w1 = graph.node('w1').id;
    expect(plan.placement[0]![w1]).toBe(plan.placement[1]![w1]);
    const tanh = graph.nodes.find((n) => n.op === 'tanh')!.id;
    expect(plan.placement[0]![tanh]).toBeLessThan(2);
    expect(plan.placement[1]![tanh]).toBeGreaterThanOrEqual(2);
  });

  it('stage placement: every node of stage s, parameters included, on its worker, replicas offset (Note [stage placement])', () => {
    const { graph } = deepMlp(8);
    const nodes = (plan: Plan) => graph.nodes.filter((n) => plan.stageOf[n.id]! >= 0);
    for (const [stagePlacement, expected] of [
      ['loop', [0, 1, 0, 1]],
      ['v', [0, 1, 1, 0]],
      [
        [1, 0, 0, 1],
        [1, 0, 0, 1],
      ],
    ] as const) {
      const plan = compile(graph, { workers: 2, stages: 4, stagePlacement });
      expect(plan.stageWorkers).toEqual(expected);
      expect(new Set(nodes(plan).map((n) => plan.stageOf[n.id]))).toEqual(new Set([0, 1, 2, 3]));
      for (const n of nodes(plan))
        expect(plan.placement[0]![n.id], label(n)).toBe(expected[plan.stageOf[n.id]!]);
    }
    // Two replicas of a V: replica r on workers 2r, 2r + 1; a replicated parameter has a copy in each.
    for (const paramPlacement of ['replicated', 'sharded'] as const) {
      const plan = compile(graph, {
        workers: 4,
        replicas: 2,
        stages: 4,
        stagePlacement: 'v',
        paramPlacement,
      });
      for (const n of nodes(plan))
        for (let r = 0; r < 2; r++) {
          const v = plan.stageWorkers[plan.stageOf[n.id]!]!;
          const at = plan.placement[r]![n.id]!;
          if (n.op === 'param' && paramPlacement === 'sharded') expect(at % 2, label(n)).toBe(v);
          else expect(at, label(n)).toBe(r * 2 + v);
        }
    }
    // An array gives the stage count; the printout says which stages each worker holds.
    const plan = compile(graph, { workers: 2, stagePlacement: [0, 1, 1, 0] });
    expect(plan.stages).toBe(4);
    expect(printPlan(plan)).toMatch(/worker 0: stages 0, 3; nodes/);
    expect(printPlan(plan)).toMatch(/worker 1: stages 1, 2; nodes/);
    expect(() => compile(graph, { workers: 2, stages: 4, stagePlacement: [0, 1, 2, 0] })).toThrow(
      ScheduleError,
    );
    expect(() => compile(graph, { workers: 2, stages: 3, stagePlacement: [0, 1, 1, 0] })).toThrow(
      'stage placement [0, 1, 1, 0] has 4 entries, but there are 3 stages',
    );
  });

  it('records its resolved options as plain data, from which compile makes the same plan again', () => {
    const { graph } = mlp();
    const cases: CompileOptions[] = [
      { workers: 1 },
      { workers: 3, placement: 'per-node', wrt: ['w2', 'w1'] },
      { workers: 4, replicas: 2, placement: 'min-comm', imbalance: 0.3, batchSize: 7 },
      { workers: 2, placement: 'stages', stages: 4, paramPlacement: 'replicated', loss: 'loss' },
      { workers: 2, placement: 'stages', stages: 4, stagePlacement: 'v' },
    ];
    for (const options of cases) {
      const plan = compile(graph, options);
      const o = plan.options;
      // Plain data: a worker gets it by structured clone or as msgpack.
      expect(JSON.parse(JSON.stringify(o))).toEqual(o);
      expect(o).toMatchObject({ workers: options.workers, replicas: options.replicas ?? 1 });
      expect(o.loss).toBe(graph.node('loss').id);
      const again = compile(graph, JSON.parse(JSON.stringify(o)));
      expect(again.options).toEqual(o);
      expect(again.placement).toEqual(plan.placement);
      expect(again.params).toEqual(plan.params);
      expect([again.stages, again.strategy]).toEqual([plan.stages, plan.strategy]);
      expect(again.stageWorkers).toEqual(plan.stageWorkers);
    }
  });

  it('prints a readable summary', () => {
    const { graph } = mlp();
    const text = printPlan(compile(graph, { workers: 2, placement: 'stages' }));
    expect(text).toMatch(/^plan: 2 workers, 1 replica, placement stages, loss %\d+/);
    expect(text).toMatch(/worker 0: stage 0; nodes \d+; params \[w1, b1.*\]; load/);
    expect(text).toMatch(/cross-worker edges: \d+/);
  });

  it('rejects bad options with what was expected', () => {
    const { graph } = mlp();
    expect(() => compile(graph, { workers: 0 })).toThrow(InputError);
    expect(() => compile(graph, { workers: 2, placement: 'nope' as never })).toThrow(
      /unknown placement 'nope'/,
    );
    expect(() => compile(graph, { workers: 2, replicas: 0 })).toThrow(/replicas >= 1/);
  });
});
