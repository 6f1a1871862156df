// What a fuzz step is: a small function that adds a few nodes to a graph under construction,
// through the generator's context (generate.ts). The steps themselves: op-steps.ts, one or more per
// registered op; feature-steps.ts, the shapes a feature switch asks for.
import type { GraphBuilder } from '../../src/graph/builder.ts';
import type { Node } from '../../src/graph/graph.ts';
import type { Rng } from '../../src/tensor/rng.ts';
import { type Domain, domainOf } from '../ops/domains.ts';
import type { Feature } from './case.ts';

/** What a step sees of the graph under construction. Values are nodes of shape [B, n]. */
export interface Ctx {
  readonly b: GraphBuilder;
  readonly rng: Rng;
  /** True if `feature` is on and a draw of probability p succeeds; records the feature as used. */
  maybe(feature: Feature, p?: number): boolean;
  /** A value, recent ones more often. */
  pick(): Node;
  /** A value of width n (a picked value sliced, padded or projected). */
  pickWidth(n: number): Node;
  /** An operand against a value of width n: another value or, with 'broadcast', a smaller shape. */
  operand(n: number, domain: Domain): Node;
  /** A parameter (with 'paramFanOut', sometimes an existing one of that shape). */
  param(shape: readonly number[]): Node;
  /** A constant drawn from a domain. */
  constant(shape: readonly number[], domain?: Domain): Node;
  /** A constant of integers in [0, n). */
  indices(shape: readonly number[], n: number): Node;
  /** The labels input y [B] (classes 0 and 1), or null without 'secondInput'. */
  labels(): Node | null;
  /** `v` mapped into a domain (e.g. exp(tanh(v)) for 'positive'). */
  into(v: Node, domain: Domain): Node;
  /** Adds a value [B, n] to the pool. */
  push(v: Node): void;
  /** Adds a scalar to the loss. */
  term(v: Node): void;
  /** Marks a value as an output the loss does not read. */
  dead(v: Node): void;
}

export interface Step {
  /** The registered op the step is about, or the name of a structural step. */
  readonly op: string;
  readonly needs?: readonly Feature[];
  build(c: Ctx): void;
}

/** Classes of the labels input y. */
export const CLASSES = 2;

export const widthOf = (v: Node) => v.shape[v.shape.length - 1] as number;
export const oneOf = <X>(c: Ctx, xs: readonly X[]): X => xs[c.rng.int(xs.length)]!;
/** Two factors a x b = n, a drawn from the divisors of n. */
export const split = (c: Ctx, n: number): [number, number] => {
  const a = oneOf(
    c,
    Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0),
  );
  return [a, n / a];
};
export const newWidth = (c: Ctx) => 1 + c.rng.int(4);

export const unary = (op: string, attrs: (c: Ctx) => Record<string, unknown> = () => ({})): Step => ({
  op,
  build: (c) => {
    const a = attrs(c);
    c.push(c.b.apply(op, [c.into(c.pick(), domainOf(op, 0, a))], a));
  },
});

/** op(value, operand) in either order; with 'broadcast' the value may be a column [B, 1]. */
export const binary = (
  op: string,
  needs: readonly Feature[] = [],
  attrs: Record<string, unknown> = {},
): Step => ({
  op,
  needs,
  build: (c) => {
    const v = c.pick();
    const n = widthOf(v);
    const column = c.maybe('broadcast', 0.15);
    const swap = c.rng.next() < 0.5;
    const first = column ? c.into(c.b.mean(v, 1, true), domainOf(op, swap ? 1 : 0)) : null;
    const main = first ?? c.into(v, domainOf(op, swap ? 1 : 0));
    const other = c.operand(n, domainOf(op, swap ? 0 : 1));
    c.push(c.b.apply(op, swap ? [other, main] : [main, other], attrs));
  },
});
