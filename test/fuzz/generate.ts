// Random graphs for the differential fuzzer, every one built from a FuzzCase (case.ts): a stem
// (inputs and a first layer), `size` steps drawn among those of op-steps.ts and feature-steps.ts
// whose features are on, then a loss that reads every value nothing else reads.
import { planGradient } from '../../src/autodiff/plan.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import type { Graph, Node } from '../../src/graph/graph.ts';
import { initParams } from '../../src/graph/params.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { type Tensor, tensor } from '../../src/tensor/tensor.ts';
import type { Domain } from '../ops/domains.ts';
import '../fixtures/fuzz-ops.ts';
import type { PlacementStrategy } from '../../src/partition/placement.ts';
import { PARAM_PLACEMENTS } from '../../src/partition/plan.ts';
import { SCHEDULE_KINDS, type ScheduleKind } from '../../src/schedule/config.ts';
import { schedulePlacement } from '../../src/schedule/generators.ts';
import { chunksFor } from '../support/schedules.ts';
import { FEATURES, type Feature, type FuzzCase, type RunConfig } from './case.ts';
import { FEATURE_STEPS } from './feature-steps.ts';
import { ADDED_OP_STEPS, OP_STEPS } from './op-steps.ts';
import { CLASSES, type Ctx, type Step } from './step.ts';

/**
 * Every step the generator draws from. The order matters: it fixes what a seed builds, so steps of
 * new ops are appended (ADDED_OP_STEPS), and a case draws among its first `ops` ops only.
 */
export const STEPS: readonly Step[] = [...OP_STEPS, ...FEATURE_STEPS, ...ADDED_OP_STEPS];

/** The ops of STEPS in order of first appearance (FuzzCase.ops counts them). */
export const OPS: readonly string[] = [...new Set(STEPS.map((s) => s.op))];

export interface BuiltCase {
  graph: Graph;
  params: Record<string, Tensor>;
  /** The feeds of step s (0, 1, ...): a fresh batch each. */
  feeds(step: number): Record<string, Tensor>;
  /** Parameters and inputs that get gradients. */
  wrt: string[];
  /** The features the graph really uses (a subset of those switched on). */
  used: Feature[];
}

/** A seeded generator for part `k` of a case, independent of every other part. */
const rngFor = (seed: number, k: number) => new Rng((seed ^ Math.imul(k + 1, 0x9e3779b1)) >>> 0);

/** Workers of one replica, as the runtime computes them. */
const groupOf = (run: FuzzCase['run']) => Math.max(1, Math.floor(run.workers / run.replicas));

/**
 * Steps are drawn by op first, then among that op's variants, so that an op with many variants is
 * not drawn more often than one with a single variant.
 */
function eligibleByOp(features: ReadonlySet<Feature>, ops: number): Step[][] {
  const byOp = new Map<string, Step[]>();
  const known = new Set(OPS.slice(0, ops));
  for (const step of STEPS) {
    if (!known.has(step.op) || !(step.needs ?? []).every((f) => features.has(f))) continue;
    byOp.set(step.op, [...(byOp.get(step.op) ?? []), step]);
  }
  return [...byOp.values()];
}

class Generator implements Ctx {
  readonly b = new GraphBuilder();
  rng: Rng;
  readonly used = new Set<Feature>();
  private readonly values: Node[] = [];
  private readonly params: Node[] = [];
  private readonly terms: Node[] = [];
  private readonly deadValues: Node[] = [];
  private y: Node | null = null;
  private c: Node | null = null;

  constructor(
    private readonly features: ReadonlySet<Feature>,
    seed: number,
  ) {
    this.rng = rngFor(seed, -1);
  }

  maybe(feature: Feature, p = 1): boolean {
    if (!this.features.has(feature) || this.rng.next() >= p) return false;
    this.used.add(feature);
    return true;
  }

  stem(width: number): Node[] {
    const x = this.b.input('x', ['B', width]);
    const inputs = [x];
    this.push(this.b.tanh(this.b.matmul(x, this.param([width, width]))));
    if (this.features.has('secondInput')) {
      const x2 = this.b.input('x2', ['B', 1 + this.rng.int(3)]);
      this.c = this.b.input('c', [width]);
      this.y = this.b.input('y', ['B']);
      this.push(x2);
      inputs.push(x2, this.c);
    }
    return inputs;
  }

  pick(): Node {
    const n = this.values.length;
    return this.values[n - 1 - Math.min(n - 1, Math.floor(this.rng.next() ** 2 * n))]!;
  }

  pickWidth(n: number): Node {
    const v = this.pick();
    const k = v.shape[1] as number;
    if (k > n) return this.b.slice(v, [0, this.rng.int(k - n + 1)], [-1, n]);
    if (k === n) return v;
    if (this.rng.next() < 0.5) return this.b.matmul(v, this.param([k, n]));
    const before = this.rng.int(n - k + 1);
    return this.b.pad(v, [0, before], [0, n - k - before]);
  }

  operand(n: number, domain: Domain): Node {
    if (!this.maybe('broadcast', 0.6)) return this.into(this.pickWidth(n), domain);
    const shape = [[n], [1, n], []][this.rng.int(3)]!;
    const kind = this.rng.int(4);
    if (kind === 0) return this.into(this.b.mean(this.pick(), 1, true), domain);
    if (kind === 1 && this.c !== null && this.c.shape[0] === n) return this.into(this.c, domain);
    // A parameter mapped into a domain would be a parameter-only node.
    const identity = domain === 'real' || domain === 'separated' || domain === 'distinct';
    if (kind === 2 && (identity || this.maybe('paramConstOnly'))) return this.into(this.param(shape), domain);
    if (kind === 3 && shape.length === 0) return this.b.constant(this.drawIn(domain), 'float32');
    return this.constant(shape, domain);
  }

  param(shape: readonly number[]): Node {
    const same = this.params.filter((p) => p.shape.join() === shape.join());
    if (same.length > 0 && this.maybe('paramFanOut', 0.5)) return same[this.rng.int(same.length)]!;
    const p = this.b.param(`p${this.params.length}`, shape, { init: { kind: 'normal', std: 0.5 } });
    this.params.push(p);
    return p;
  }

  private drawIn(domain: Domain): number {
    if (domain === 'positive') return this.rng.uniform(0.5, 2);
    if (domain === 'awayFromZero') return (this.rng.next() < 0.5 ? -1 : 1) * this.rng.uniform(0.2, 1.5);
    return this.rng.uniform(-1.5, 1.5);
  }

  constant(shape: readonly number[], domain: Domain = 'real'): Node {
    const size = shape.reduce((p, d) => p * d, 1);
    const values = Array.from({ length: size }, () => this.drawIn(domain));
    return this.b.const(tensor(values, { shape }));
  }

  indices(shape: readonly number[], n: number): Node {
    const size = shape.reduce((p, d) => p * d, 1);
    return this.b.const(
      tensor(
        Array.from({ length: size }, () => this.rng.int(n)),
        { shape },
      ),
    );
  }

  labels(): Node | null {
    if (this.y === null) return null;
    this.used.add('secondInput');
    return this.y;
  }

  into(v: Node, domain: Domain): Node {
    if (domain === 'real' || domain === 'separated' || domain === 'distinct') return v;
    if (domain !== 'positive' && domain !== 'awayFromZero')
      throw new Error(`into: a step must build '${domain}' values itself`);
    const positive = this.b.exp(this.b.tanh(v));
    if (domain === 'positive') return positive;
    const last = v.shape.length === 0 ? [] : [v.shape[v.shape.length - 1] as number];
    return this.b.mul(positive, this.constant(last, 'awayFromZero'));
  }

  push(v: Node): void {
    if (v.shape.length !== 2 || v.shape[0] !== 'B' || typeof v.shape[1] !== 'number')
      throw new Error(`push: expected a value [B, n], found [${v.shape.join(', ')}] (${v.op})`);
    if (v.op === 'input' && v.name !== 'x') this.used.add('secondInput');
    this.values.push(v);
  }

  term(v: Node): void {
    this.terms.push(v);
  }

  dead(v: Node): void {
    this.deadValues.push(v);
  }

  /** A value read through parameter p by a differentiable op. */
  private connect(p: Node): Node {
    // A filter [kh, kw, c, f] joins through its mean.
    if (p.shape.length > 2) return this.b.mul(this.pick(), this.b.mean(p));
    if (p.shape.length === 2) return this.b.matmul(this.pickWidth(p.shape[0] as number), p);
    return this.b.mul(p.shape.length === 0 ? this.pick() : this.pickWidth(p.shape.at(-1) as number), p);
  }

  /** The loss: the terms, plus a reduction of every value no node reads; dead values become outputs. */
  finish(): void {
    const read = new Set<number>();
    const nodes = this.b.build().nodes;
    for (const n of nodes) for (const i of n.inputs) read.add(i);
    const dead = new Set(this.deadValues.map((v) => v.id));
    for (const n of nodes) {
      if (read.has(n.id) || dead.has(n.id) || ['input', 'param', 'const'].includes(n.op)) continue;
      if (this.terms.some((t) => t.id === n.id)) continue;
      const r = this.rng.int(3);
      this.terms.push(r === 0 ? this.b.mean(this.b.square(n)) : r === 1 ? this.b.mean(n) : this.b.sum(n));
    }
    if (this.terms.length === 0) this.terms.push(this.b.mean(this.b.square(this.values[0]!)));
    let loss = this.terms.reduce((a, t) => this.b.add(a, t));
    // Without 'disconnectedParam', every parameter gets a differentiable path to the loss (steps
    // may leave one behind a stopGradient, or read it only where the loss does not look).
    if (!this.features.has('disconnectedParam')) {
      for (const id of planGradient(this.b.build(), loss.id, this.params).disconnected)
        loss = this.b.add(loss, this.b.mean(this.connect(this.b.node(id))));
    }
    this.b.output('loss', loss);
    for (const [k, v] of this.deadValues.entries()) this.b.output(`dead${k}`, v);
  }
}

/** Stage of step i of n on a pipeline of `stages` stages: contiguous runs, or up and back down. */
function stageOf(i: number, n: number, stages: number, v: boolean): number {
  const t = n <= 1 ? 0 : i / (n - 1);
  if (!v) return Math.min(stages - 1, Math.floor(t * stages));
  const up = t < 0.5 ? 2 * t : 2 - 2 * t;
  return Math.min(stages - 1, Math.floor(up * stages));
}

export function buildCase(c: FuzzCase): BuiltCase {
  const features = new Set(c.features);
  const g = new Generator(features, c.seed);
  const manual = c.run.placement === 'manual';
  const stages = groupOf(c.run) * (c.run.schedule !== undefined ? (c.run.chunks ?? 1) : 1);
  const v = manual && stages > 1 && g.maybe('backStages');
  // The stem is part 0, step i part i + 1, the loss part size + 1.
  const onStage = <R>(part: number, body: () => R): R =>
    manual && !g.maybe('partialStages', 0.3)
      ? g.b.onStage(stageOf(part, c.size + 2, stages, v), body)
      : body();
  const inputs = onStage(0, () => g.stem(c.width));
  const choices = eligibleByOp(features, c.ops ?? OPS.length);
  for (let i = 0; i < c.size; i++) {
    g.rng = rngFor(c.seed, i);
    const variants = choices[g.rng.int(choices.length)]!;
    const step = variants[g.rng.int(variants.length)]!;
    // A skipped step still draws its step, so that the steps after it draw what they drew before.
    if (c.skip.includes(i)) continue;
    for (const f of step.needs ?? []) g.used.add(f);
    onStage(i + 1, () => step.build(g));
  }
  g.rng = rngFor(c.seed, c.size);
  onStage(c.size + 1, () => g.finish());
  const graph = g.b.build();
  const params = graph.params().map((p) => p.name!);
  const wrt = params.filter(() => !g.maybe('frozenParam', 0.3));
  for (const x of inputs) if (g.maybe('wrtInputs', 0.5)) wrt.push(x.name!);
  if (c.run.optimizer !== undefined) g.used.add('optimizer');
  if (c.run.graphFile === true) g.used.add('graphFile');
  if (c.features.includes('wide') && c.width > 64) g.used.add('wide');
  if (c.run.schedule !== undefined) g.used.add('schedules');
  if (
    c.run.schedule === 'gpipe-v' ||
    (c.run.schedule !== undefined && schedulePlacement(c.run.schedule) === 'v')
  )
    g.used.add('vStages');
  if (c.run.schedule !== undefined && !['stages', 'manual'].includes(c.run.placement))
    g.used.add('scheduleAnyPlacement');
  if (c.run.schedule !== undefined && c.run.microbatches > 2 * Math.max(1, c.run.workers / c.run.replicas))
    g.used.add('manyMicrobatches');
  const x2 = graph.inputs().find((n) => n.name === 'x2');
  return {
    graph,
    params: initParams(graph, c.seed),
    feeds: (step) => {
      const rng = rngFor(c.seed, 1_000_000 + step);
      const feeds: Record<string, Tensor> = { x: rng.normalTensor([c.run.batch, c.width]) };
      if (x2 !== undefined) {
        feeds['x2'] = rng.normalTensor([c.run.batch, x2.shape[1] as number]);
        feeds['c'] = rng.uniformTensor([c.width], -1, 1);
        feeds['y'] = tensor(Array.from({ length: c.run.batch }, () => rng.int(CLASSES)));
      }
      return feeds;
    },
    wrt,
    used: [...g.used].sort(),
  };
}

export interface CaseOptions {
  features: readonly Feature[];
  mode: RunConfig['mode'];
  /** The most steps a graph has (default 10). */
  maxSize?: number;
}

const PLACEMENTS: Record<RunConfig['mode'], readonly PlacementStrategy[]> = {
  'in-process': ['per-node', 'stages', 'manual', 'min-comm'],
  // Threads cost ~0.5 s a runtime: their few cases go to the two placements that differ most.
  threads: ['per-node', 'stages'],
  nats: ['per-node', 'stages'],
};

/** `m` if interleaving over p workers accepts it (Note [interleaved rounds]), else the multiple of p below. */
function interleavedMicrobatches(p: number, m: number): number {
  return m % Math.max(1, Math.floor(m / p)) === 0 ? m : Math.floor(m / p) * p;
}

/** A random case from a seed: its graph's size and width, and how the runtime runs it. */
export function randomCase(seed: number, options: CaseOptions): FuzzCase {
  const rng = rngFor(seed, -2);
  const oneOf = <X>(xs: readonly X[]): X => xs[rng.int(xs.length)]!;
  const features = new Set(options.features);
  // Worker threads, here or on node processes: a runtime costs a start, so fewer and smaller runs.
  const threads = options.mode !== 'in-process';
  const workers = threads ? 2 + rng.int(2) : 1 + rng.int(3);
  const replicas = 1 + rng.int(threads ? 2 : workers);
  const group = Math.max(1, Math.floor(workers / replicas));
  let placement = oneOf(PLACEMENTS[options.mode]);
  if (features.has('backStages') && !threads && rng.next() < 0.5) placement = 'manual';
  let schedule: ScheduleKind | 'gpipe-v' | undefined;
  if (features.has('schedules') && rng.next() < 0.4) {
    // The V schedules (ZB-V, DualPipeV, and a hand-written GPipe order) need the vStages feature.
    const kinds = SCHEDULE_KINDS.filter((k) => features.has('vStages') || schedulePlacement(k) !== 'v');
    schedule = features.has('vStages') && rng.next() < 0.3 ? 'gpipe-v' : oneOf(kinds);
    if (placement !== 'manual' && !(features.has('scheduleAnyPlacement') && rng.next() < 0.5))
      placement = 'stages';
  }
  // Each schedule's rule (checkPipelineConfig): 1F1B and ZB-H1 need m >= p, the interleaved ones (2
  // chunks) a multiple of their rounds max(1, floor(m/p)), DualPipeV m >= 2p; the others any m.
  const microbatches =
    schedule === '1f1b' || schedule === 'zb-h1'
      ? group + rng.int(2)
      : schedule === 'interleaved-1f1b' || schedule === 'interleaved-zb'
        ? interleavedMicrobatches(group, 1 + rng.int(2 * group + 1))
        : schedule === 'dualpipe-v'
          ? 2 * group + rng.int(2)
          : 1 + rng.int(4);
  const maxSize = options.maxSize ?? 10;
  const c: FuzzCase = {
    seed,
    size: 4 + rng.int(maxSize - 3),
    skip: [],
    ops: OPS.length,
    width: 2 + rng.int(3),
    features: FEATURES.filter((f) => features.has(f)),
    run: {
      mode: options.mode,
      workers,
      replicas,
      microbatches,
      placement,
      paramPlacement: oneOf(PARAM_PLACEMENTS),
      ...(schedule ? { schedule } : {}),
      ...(schedule !== undefined && (schedule === 'gpipe-v' || chunksFor(schedule) === 2)
        ? { chunks: 2 }
        : {}),
      ...(threads ? {} : { shuffleSeed: rng.int(2 ** 31) }),
      ...(features.has('optimizer') && rng.next() < 0.3
        ? { optimizer: oneOf(['sgd', 'adam'] as const) }
        : {}),
      batch: replicas * microbatches + rng.int(4),
      steps: 2,
      ...(features.has('graphFile') && rng.next() < 0.3 ? { graphFile: true as const } : {}),
    },
  };
  if (schedule !== undefined && features.has('manyMicrobatches')) manyMicrobatches(c, schedule, group);
  if (threads && features.has('wide')) wide(c);
  return c;
}

/** Half the time, a stem 65-96 wide (Note [tensor ring]), from a stream of its own. */
function wide(c: FuzzCase): void {
  const rng = rngFor(c.seed, -4);
  if (rng.next() < 0.5) c.width = 65 + rng.int(32);
}

/**
 * Half the time, a schedule's microbatch count redrawn up to 8x its workers (m = 20 over p = 3 hung
 * ZB-H1 once), within the kind's rule, from a stream of its own: the cases of every other feature keep
 * their draws.
 */
function manyMicrobatches(c: FuzzCase, schedule: ScheduleKind | 'gpipe-v', group: number): void {
  const rng = rngFor(c.seed, -3);
  if (rng.next() < 0.5) return;
  const more = group + rng.int(7 * group + 1);
  const m =
    schedule === '1f1b' || schedule === 'zb-h1'
      ? more
      : schedule === 'interleaved-1f1b' || schedule === 'interleaved-zb'
        ? interleavedMicrobatches(group, more)
        : schedule === 'dualpipe-v'
          ? 2 * group + rng.int(2 * group + 1)
          : 1 + rng.int(4 * group);
  const extra = c.run.batch - c.run.replicas * c.run.microbatches;
  c.run.microbatches = m;
  c.run.batch = c.run.replicas * m + extra;
}
