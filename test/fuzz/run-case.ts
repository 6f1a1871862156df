// The differential harness: one case on the runtime and on the reference engine with the same
// shards, compared bit for bit (losses, global norms, every gradient, and with an optimizer
// the parameters after the updates).

import { referenceStep } from '../../src/autodiff/microbatch.ts';
import { ScheduleError, StepTimeoutError } from '../../src/errors.ts';
import { deserializeGraph, serializeGraph } from '../../src/graph/serialize.ts';
import { OptimizerRun } from '../../src/optim/optimizer.ts';
import { globalNormOf, makeOptimizer, type OptimizerSpec, sumOfSquares } from '../../src/optim/spec.ts';
import { compile } from '../../src/partition/plan.ts';
import type { ScheduleSpec } from '../../src/runtime/pipeline.ts';
import type { NatsClusterOptions } from '../../src/runtime/rendezvous.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { action, type Schedule } from '../../src/schedule/action.ts';
import { schedulePlacement } from '../../src/schedule/generators.ts';
import { bitwiseEqual, cast, type Tensor } from '../../src/tensor/tensor.ts';
import { FUZZ_OPS_URL } from '../fixtures/fuzz-ops.ts';
import type { FuzzCase, RunConfig } from './case.ts';
import { type BuiltCase, buildCase } from './generate.ts';

/**
 * Why a case failed. 'generator': the case could not be built (a fuzzer bug); 'reference': the oracle
 * threw; 'refused': createRuntime threw; 'timeout': a step did not finish; 'mismatch': a number
 * differs; 'error': a step or a call after it threw.
 */
export type FailureKind = 'generator' | 'reference' | 'refused' | 'timeout' | 'mismatch' | 'error';

export type Outcome = { ok: true } | { ok: false; kind: FailureKind; message: string };

export interface HarnessOptions {
  /** Each step's deadline: short, so that a hang fails fast. */
  stepTimeoutMs: number;
  /** Mode 'nats': the node processes' cluster (its nodes offer at least 3 hosts in all). */
  cluster?: NatsClusterOptions;
}

const OPTIMIZERS: Record<NonNullable<FuzzCase['run']['optimizer']>, OptimizerSpec> = {
  sgd: { name: 'sgd', lr: 0.1, momentum: 0.9 },
  adam: { name: 'adam', lr: 0.01 },
};

interface ReferenceRun {
  losses: number[];
  grads: Record<string, Tensor>[];
  norms: number[];
  /** The parameters after the last step's update (with an optimizer). */
  params: Record<string, Tensor>;
}

/** The reference training loop: referenceStep per step, then the same optimizer on this thread. */
function referenceRun(c: FuzzCase, built: BuiltCase): ReferenceRun {
  const { run } = c;
  const params = Object.fromEntries(Object.entries(built.params).map(([k, v]) => [k, cast(v)]));
  const opt = run.optimizer ? new OptimizerRun(makeOptimizer(OPTIMIZERS[run.optimizer])) : null;
  const out: ReferenceRun = { losses: [], grads: [], norms: [], params };
  for (let s = 0; s < run.steps; s++) {
    const { loss, grads } = referenceStep(built.graph, built.feeds(s), params, {
      replicas: run.replicas,
      microbatches: run.microbatches,
      wrt: built.wrt,
      // The runtime's steps count from 1 (Note [run context]).
      step: s + 1,
    });
    // The global norm and the update are the parameters' (inputs in wrt get a gradient, no update).
    const paramGrads = Object.fromEntries(Object.entries(grads).filter(([k]) => Object.hasOwn(params, k)));
    const norm = globalNormOf(
      Object.fromEntries(Object.entries(paramGrads).map(([k, g]) => [k, sumOfSquares(g)])),
    );
    out.losses.push(loss);
    out.grads.push(grads);
    out.norms.push(norm);
    // The runtime skips the update of a non-finite step (nonFinite: 'skip').
    if (opt !== null && Number.isFinite(norm) && Number.isFinite(loss)) opt.apply(params, paramGrads);
  }
  return out;
}

const hexOf = (bytes: Uint8Array) =>
  `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;

/** A float64 with its bits (big-endian), e.g. `1 (0x3ff0000000000000)`. */
const bits64 = (x: number) => {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return `${x} (${hexOf(new Uint8Array(view.buffer))})`;
};

const sameNumber = (a: number, b: number) => bits64(a) === bits64(b);

/** Element i of a tensor with the bits of its storage (read as bytes: NaN payloads survive). */
function element(t: Tensor, i: number): string {
  const size = t.data.BYTES_PER_ELEMENT;
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset + i * size, size).slice().reverse();
  return `${t.data[i]} (${hexOf(bytes)})`;
}

/** Where two tensors first differ (shape, dtype or the bits of an element), or null. */
export function tensorDiff(what: string, got: Tensor | undefined, want: Tensor): string | null {
  if (got === undefined) return `${what} is missing`;
  if (bitwiseEqual(got, want)) return null;
  if (got.dtype !== want.dtype || got.shape.join() !== want.shape.join())
    return `${what}: runtime ${got.dtype}[${got.shape}], reference ${want.dtype}[${want.shape}]`;
  let i = 0;
  while (element(got, i) === element(want, i)) i++;
  return `${what} differs at element ${i}: runtime ${element(got, i)}, reference ${element(want, i)}`;
}

/**
 * A V over the workers of a replica, 2 chunks each (stage s on worker s, then mirrored), in GPipe
 * order: each worker runs the forwards of its first stage, then of its second, then the backwards
 * of its second stage, then of its first.
 */
export function gpipeV(workers: number, microbatches: number): Schedule {
  const mbs = Array.from({ length: microbatches }, (_, m) => m);
  return Array.from({ length: workers }, (_, w) => {
    const [first, second] = [w, 2 * workers - 1 - w];
    return [
      ...mbs.map((m) => action('F', first, m)),
      ...mbs.map((m) => action('F', second, m)),
      ...mbs.map((m) => action('B', second, m)),
      ...mbs.map((m) => action('B', first, m)),
    ];
  });
}

function scheduleOf(run: RunConfig): ScheduleSpec {
  if (run.schedule !== 'gpipe-v') return run.schedule!;
  const group = Math.max(1, Math.floor(run.workers / run.replicas));
  return { schedule: gpipeV(group, run.microbatches), stagePlacement: 'v' };
}

/**
 * True when the case's plan has a value flowing back to an earlier stage: a pipeline schedule must
 * refuse such a plan before any worker starts (it would hang). Worked out here from the plan's
 * stages, independently of the runtime's check.
 */
function flowsBack(c: FuzzCase, built: BuiltCase): boolean {
  const { run } = c;
  if (run.schedule === undefined || !['stages', 'manual'].includes(run.placement)) return false;
  const group = Math.max(1, Math.floor(run.workers / run.replicas));
  const plan = compile(built.graph, {
    workers: run.workers,
    replicas: run.replicas,
    placement: run.placement,
    paramPlacement: run.paramPlacement,
    stages: group * (run.chunks ?? 1),
    stagePlacement: run.schedule === 'gpipe-v' ? 'v' : schedulePlacement(run.schedule),
    wrt: built.wrt,
  });
  return built.graph.nodes.some((n) =>
    n.inputs.some((i) => {
      const op = built.graph.nodes[i]!.op;
      return (
        op !== 'param' && op !== 'const' && plan.stageOf[n.id]! >= 0 && plan.stageOf[i]! > plan.stageOf[n.id]!
      );
    }),
  );
}

/** The runtime options of a case (what createRuntime is given). */
export function runtimeOptions(c: FuzzCase, built: BuiltCase, options: HarnessOptions): RuntimeOptions {
  const { run } = c;
  // `ops`: the modules that register user ops on the workers (in-process needs none).
  const withOps: RuntimeOptions & { ops?: readonly string[] } = {
    ...(run.mode === 'nats' ? { cluster: options.cluster! } : { mode: run.mode }),
    workers: run.workers,
    replicas: run.replicas,
    microbatches: run.microbatches,
    placement: run.placement,
    paramPlacement: run.paramPlacement,
    ...(run.schedule ? { schedule: scheduleOf(run) } : {}),
    ...(run.chunks ? { chunks: run.chunks } : {}),
    ...(run.shuffleSeed !== undefined ? { shuffleSeed: run.shuffleSeed } : {}),
    ...(run.optimizer ? { optimizer: OPTIMIZERS[run.optimizer] } : {}),
    params: built.params,
    wrt: built.wrt,
    nonFinite: 'skip',
    onWarning: () => {},
    stepTimeoutMs: options.stepTimeoutMs,
    ...(built.used.includes('userOps') ? { ops: [FUZZ_OPS_URL] } : {}),
  };
  return withOps;
}

const describeError = (err: unknown) =>
  err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${String(err)}`;

/** Runs the case's steps and returns the first difference from the reference, or null. */
async function compareSteps(
  c: FuzzCase,
  built: BuiltCase,
  ref: ReferenceRun,
  rt: Runtime,
): Promise<string | null> {
  for (let s = 0; s < c.run.steps; s++) {
    const out = await rt.step(built.feeds(s));
    const at = `step ${s + 1}`;
    if (!sameNumber(out.loss, ref.losses[s]!))
      return `${at}: loss: runtime ${bits64(out.loss)}, reference ${bits64(ref.losses[s]!)}`;
    // With an optimizer from the hosts' sums for the update; without one, from the sums the hosts
    // send with their gradients (Note [global norm order]).
    if (!sameNumber(out.gradNorm, ref.norms[s]!))
      return `${at}: global norm: runtime ${bits64(out.gradNorm)}, reference ${bits64(ref.norms[s]!)}`;
    if (c.run.optimizer) continue;
    const want = ref.grads[s]!;
    const [got, names] = [Object.keys(out.grads).sort(), Object.keys(want).sort()];
    if (got.join() !== names.join()) return `${at}: gradients of [${got}], the reference has [${names}]`;
    for (const name of names) {
      const diff = tensorDiff(`${at}: gradient of ${name}`, out.grads[name], want[name]!);
      if (diff !== null) return diff;
    }
  }
  if (c.run.optimizer) {
    const params = await rt.getParams();
    for (const [name, want] of Object.entries(ref.params)) {
      const diff = tensorDiff(`after ${c.run.steps} updates: parameter ${name}`, params[name], want);
      if (diff !== null) return diff;
    }
  }
  return null;
}

export async function runCase(c: FuzzCase, options: HarnessOptions): Promise<Outcome> {
  let built: BuiltCase;
  try {
    built = buildCase(c);
  } catch (err) {
    return { ok: false, kind: 'generator', message: describeError(err) };
  }
  let ref: ReferenceRun;
  try {
    ref = referenceRun(c, built);
  } catch (err) {
    return { ok: false, kind: 'reference', message: describeError(err) };
  }
  let rt: Runtime;
  try {
    // Note [graph format]: the graph read back is on its decoded columns, another source of nodes.
    const graph = c.run.graphFile === true ? deserializeGraph(serializeGraph(built.graph)) : built.graph;
    rt = await createRuntime(graph, runtimeOptions(c, built, options));
  } catch (err) {
    // A schedule over a plan whose values flow back to an earlier stage must be refused, and only then.
    // So must a schedule over a placement that does not cut the graph into stages.
    if (
      err instanceof ScheduleError &&
      (!['stages', 'manual'].includes(c.run.placement) || flowsBack(c, built))
    )
      return { ok: true };
    return { ok: false, kind: 'refused', message: describeError(err) };
  }
  try {
    const diff = await compareSteps(c, built, ref, rt);
    return diff === null ? { ok: true } : { ok: false, kind: 'mismatch', message: diff };
  } catch (err) {
    const kind = err instanceof StepTimeoutError ? 'timeout' : 'error';
    return { ok: false, kind, message: describeError(err) };
  } finally {
    await rt.close();
  }
}
