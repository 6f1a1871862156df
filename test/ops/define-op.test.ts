// Users' own ops through the public defineOp: one definition serves eager, the builder, the
// reference engine, gradGraph and gradcheck; a definition that lies is caught where it lies.
import { describe, expect, it } from 'vitest';
import { evaluate, valueAndGrad } from '../../src/autodiff/engine.ts';
import { gradGraph } from '../../src/autodiff/grad-graph.ts';
import { gradcheck, gradcheckFn } from '../../src/autodiff/gradcheck.ts';
import { GradientError, OpError, ShapeError } from '../../src/errors.ts';
import { GraphBuilder } from '../../src/graph/builder.ts';
import { eager } from '../../src/ops/eager.ts';
import type { Attrs, OpDef, Vjp } from '../../src/ops/op.ts';
import { defineOp, hasOp } from '../../src/ops/registry.ts';
import { allocate, Tensor } from '../../src/tensor/tensor.ts';
import { expectBitwise } from '../support/expect.ts';
import { t64 } from './domains.ts';

// The registry is global: every test registers its ops under names of its own.
let counter = 0;
const unique = (base: string) => `${base}_${++counter}`;

/** The definition of an elementwise op x -> f(x) computed on the storage, with the given VJP. */
const elementwiseDef = (name: string, f: (v: number) => number, vjp: Vjp<Attrs>): OpDef => ({
  name,
  arity: 1,
  saves: { inputs: [0], output: false },
  infer: ([x]) => ({ shape: x!.shape, dtype: x!.dtype }),
  forward: ([x]) => {
    const out = allocate(x!.dtype, x!.size);
    for (let i = 0; i < out.length; i++) out[i] = f(x!.data[i]!);
    return new Tensor(x!.dtype, x!.shape, out);
  },
  vjp,
});

/** cube(x) = x^3, d/dx = 3 x^2, written against Ops<T> like a built-in op. */
const cubeDef = (name: string): OpDef =>
  elementwiseDef(
    name,
    (v) => v * v * v,
    (o, { g, input }) => [o.mul(g, o.mul(o.square(input(0)), 3))],
  );
const defineCube = (name = unique('cube')) => defineOp(cubeDef(name));
const elementwise = (name: string, f: (v: number) => number, vjp: Vjp<Attrs>) =>
  defineOp(elementwiseDef(name, f, vjp));

const x = t64([
  [1, -2, 0.5],
  [3, 0, -1],
]);

/** loss = sum(op(x) * w) with x a parameter; returns the graph. */
function lossOf(op: string, w: Tensor = t64([1, 2, -1]), nodeName?: string) {
  const b = new GraphBuilder();
  const p = b.param('x', [2, 3], { dtype: 'float64' });
  let y = b.apply(op, [p]);
  if (nodeName !== undefined) y = b.name(y, nodeName);
  b.output('y', y);
  b.output('loss', b.sum(b.mul(y, b.const(w))));
  return b.build();
}

function caught(f: () => unknown): Error & { context: Record<string, unknown> } {
  try {
    f();
  } catch (err) {
    return err as Error & { context: Record<string, unknown> };
  }
  throw new Error('expected an error');
}

describe('a user-defined op', () => {
  const cube = defineCube();

  it('is registered and runs eagerly', () => {
    expect(hasOp(cube.name)).toBe(true);
    expect(Array.from(eager.apply(cube.name, [x]).data)).toEqual([1, -8, 0.125, 27, 0, -1]);
  });

  it('works in the builder and the reference engine', () => {
    const graph = lossOf(cube.name);
    expect(graph.node('y')).toMatchObject({ op: cube.name, shape: [2, 3], dtype: 'float64' });
    const { value, grads } = valueAndGrad(graph, { loss: 'loss' })({}, { x });
    // sum(x^3 * w) with w = [1, 2, -1] per row; d/dx = 3 x^2 w.
    expect(value.item()).toBe(1 - 16 - 0.125 + 27 + 0 + 1);
    expect(Array.from(grads['x']!.data)).toEqual([3, 24, -0.75, 27, 0, -3]);
  });

  it('passes gradcheck, to first and second order', () => {
    const first = gradcheckFn((b, p) => b.apply(cube.name, [p]), [x], { atol: 1e-6, rtol: 1e-5 });
    expect(first.failures).toEqual([]);
    const gg = gradGraph(lossOf(cube.name), { loss: 'loss' });
    const second = gradcheck(gg, { loss: 'grad:x', wrt: ['x'], params: { x }, atol: 1e-6, rtol: 1e-5 });
    expect(second.failures).toEqual([]);
    expect(second.checked).toBe(6);
  });

  it('works in gradGraph, bit for bit with the reference engine', () => {
    const graph = lossOf(cube.name);
    const gg = gradGraph(graph, { loss: 'loss' });
    // The backward of a custom op is ordinary nodes of the built-in ops its VJP calls.
    expect(gg.nodes.slice(graph.size).some((n) => n.op === 'square')).toBe(true);
    const symbolic = evaluate(gg, {}, { x }, ['grad:x'])['grad:x']!;
    const { grads } = valueAndGrad(graph, { loss: 'loss' })({}, { x });
    expectBitwise(symbolic, grads['x']!);
  });

  it('with a wrong VJP fails gradcheck (the oracle has teeth)', () => {
    const wrong = elementwise(
      unique('cubeWrongVjp'),
      (v) => v * v * v,
      (o, { g, input }) => [o.mul(g, o.mul(o.square(input(0)), 2))],
    );
    const report = gradcheckFn((b, p) => b.apply(wrong.name, [p]), [x]);
    expect(report.ok).toBe(false);
    // Every element except x = 0, where 2x^2 and 3x^2 agree.
    expect(report.failures.map((f) => f.index)).toEqual([0, 1, 2, 3, 5]);
  });
});

describe('defineOp refuses bad registrations', () => {
  it('registering the same name twice throws OpError', () => {
    const name = unique('twice');
    defineCube(name);
    const err = caught(() => defineCube(name));
    expect(err).toBeInstanceOf(OpError);
    expect(err.message).toMatch(new RegExp(`'${name}' is already registered`));
    expect(err.context).toMatchObject({ op: name });
  });

  it('a built-in name or a graph leaf name throws OpError', () => {
    expect(() => defineCube('add')).toThrow(OpError);
    expect(() => defineCube('param')).toThrow(/reserved for graph leaves/);
    expect(() => defineCube('')).toThrow(OpError);
  });
});

describe('a user-defined op that lies is caught', () => {
  it('a VJP reading an input not declared in saves throws GradientError', () => {
    const sneaky = defineOp({ ...cubeDef(unique('cubeSneaky')), saves: { inputs: 'none', output: false } });
    const run = valueAndGrad(lossOf(sneaky.name, undefined, 'c'), { loss: 'loss' });
    const err = caught(() => run({}, { x }));
    expect(err).toBeInstanceOf(GradientError);
    expect(err.message).toMatch(
      new RegExp(`^${sneaky.name}: its VJP reads input 0, which the op does not declare`),
    );
    expect(err.context).toMatchObject({ op: sneaky.name, node: 'c', input: 0 });
    // The symbolic engine enforces the same declaration.
    expect(() => gradGraph(lossOf(sneaky.name), { loss: 'loss' })).toThrow(GradientError);
  });

  it('a VJP reading its output not declared in saves throws GradientError', () => {
    const op = elementwise(unique('expNoOutput'), Math.exp, (o, { g, output }) => [o.mul(g, output())]);
    const err = caught(() => valueAndGrad(lossOf(op.name), { loss: 'loss' })({}, { x }));
    expect(err).toBeInstanceOf(GradientError);
    expect(err.message).toMatch(/reads its output/);
  });

  it('a VJP returning a gradient of the wrong shape throws ShapeError naming the op, node and input', () => {
    const op = elementwise(
      unique('cubeBadShape'),
      (v) => v * v * v,
      (o, { g }) => [o.transpose(g)],
    );
    const err = caught(() => valueAndGrad(lossOf(op.name, undefined, 'cubed'), { loss: 'loss' })({}, { x }));
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(
      new RegExp(
        `^${op.name} at cubed: its VJP returned a gradient of shape \\[3,2\\] for input 0, expected \\[2,3\\]`,
      ),
    );
    expect(err.context).toMatchObject({
      op: op.name,
      node: 'cubed',
      input: 0,
      expected: [2, 3],
      found: [3, 2],
    });
    // A gradient that only broadcasts to the input's shape is refused too (summing it would be silent).
    const summed = elementwise(
      unique('cubeSummed'),
      (v) => v,
      (o, { g }) => [o.sum(g, 0)],
    );
    expect(() => valueAndGrad(lossOf(summed.name), { loss: 'loss' })({}, { x })).toThrow(ShapeError);
  });

  it('a VJP returning nothing for an input that needs a gradient throws GradientError', () => {
    const op = elementwise(
      unique('cubeNull'),
      (v) => v * v * v,
      () => [null],
    );
    const err = caught(() => valueAndGrad(lossOf(op.name, undefined, 'n'), { loss: 'loss' })({}, { x }));
    expect(err).toBeInstanceOf(GradientError);
    expect(err.context).toMatchObject({ op: op.name, node: 'n', input: 0 });
  });

  it('a forward returning the wrong shape throws ShapeError, eagerly and in a graph', () => {
    const op = defineOp({
      ...cubeDef(unique('cubeFlat')),
      forward: ([v]) => new Tensor(v!.dtype, [v!.size], allocate(v!.dtype, v!.size)),
    });
    const eagerErr = caught(() => eager.apply(op.name, [x]));
    expect(eagerErr).toBeInstanceOf(ShapeError);
    expect(eagerErr.message).toMatch(
      new RegExp(`^${op.name}: forward returned float64\\[6\\], its shape rule says float64\\[2,3\\]`),
    );
    const graphErr = caught(() => evaluate(lossOf(op.name, undefined, 'flat'), {}, { x }));
    expect(graphErr).toBeInstanceOf(ShapeError);
    expect(graphErr.message).toMatch(
      new RegExp(`^${op.name} at flat: forward returned float64\\[6\\], expected float64\\[2,3\\]`),
    );
    expect(graphErr.context).toMatchObject({ op: op.name, node: 'flat', expected: [2, 3], found: [6] });
  });

  it('a forward returning the wrong dtype throws ShapeError', () => {
    const op = defineOp({
      ...cubeDef(unique('cubeF32')),
      forward: ([v]) => new Tensor('float32', v!.shape, allocate('float32', v!.size)),
    });
    expect(() => eager.apply(op.name, [x])).toThrow(/forward returned float32\[2,3\]/);
    expect(() => evaluate(lossOf(op.name), {}, { x })).toThrow(ShapeError);
  });
});
