import { fmtShape, GraphError, InputError } from '../errors.ts';
import { checkArity } from '../ops/arity.ts';
import { inferType } from '../ops/attrs.ts';
import { type Attrs, NO_ATTRS } from '../ops/op.ts';
import { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import type { Initializer } from '../tensor/init.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { checkConcreteShape, shapesEqual } from '../tensor/shape.ts';
import { checkDType, type DType, scalar, type Tensor } from '../tensor/tensor.ts';
import { dict } from '../util/names.ts';
import { type Graph, label, type Node, namedGraph } from './graph.ts';
import '../ops/builtins.ts';

/**
 * Builds a graph, one method per op (inherited from `Ops`): each call checks its shapes at once and
 * appends a node, so nodes are in topological order by construction.
 *
 * ```ts
 * const b = new GraphBuilder();
 * const x = b.input('x', ['B', 784]);
 * const w = b.param('w', [784, 10], { init: { kind: 'glorotUniform' } });
 * b.output('loss', b.softmaxCrossEntropy(b.matmul(x, w), b.input('y', ['B'])));
 * const graph = b.build();
 * ```
 */
export class GraphBuilder extends Ops<Node> {
  private readonly nodes: Node[] = [];
  private readonly outputs = dict<number>();
  /** Node ids by name. */
  private readonly names = new Map<string, number>();
  private readonly scalars = new Map<string, Node>();
  private stage: number | undefined;
  /**
   * Node objects `name` replaced: still accepted as inputs. (Every other node of this builder is
   * `nodes[node.id]` itself, which `owns` checks first.)
   */
  private readonly renamed = new WeakSet<Node>();

  /** A builder that continues an existing graph (its nodes keep their ids). */
  static from(graph: Graph): GraphBuilder {
    const b = new GraphBuilder();
    for (const n of graph.nodes) {
      b.nodes.push(n);
      if (n.name !== undefined) b.names.set(n.name, n.id);
    }
    Object.assign(b.outputs, graph.outputs);
    return b;
  }

  /** The number of nodes recorded so far. */
  get size(): number {
    return this.nodes.length;
  }

  protected override nextId(): number {
    return this.nodes.length;
  }

  /** A node of this builder by id or name (or output name). */
  node(ref: number | string): Node {
    const id =
      typeof ref === 'number'
        ? ref
        : (this.names.get(ref) ?? (Object.hasOwn(this.outputs, ref) ? this.outputs[ref] : undefined));
    const node = id === undefined ? undefined : this.nodes[id];
    if (node === undefined)
      throw new GraphError(`no node ${JSON.stringify(ref)} in this builder`, { node: ref });
    return node;
  }

  // Nodes are created with their fields in one fixed order (id, op, inputs, attrs, shape, dtype,
  // then name and stage when set) and without spreads: building a million-node graph is dominated
  // by this function.
  private push(
    op: string,
    inputs: readonly number[],
    attrs: Attrs,
    shape: Shape,
    dtype: DType,
    name?: string,
  ): Node {
    if (name !== undefined) {
      this.claim(name);
      this.names.set(name, this.nodes.length);
    }
    const id = this.nodes.length;
    const stage = this.stage;
    let node: Node;
    if (name === undefined && stage === undefined) node = { id, op, inputs, attrs, shape, dtype };
    else if (stage === undefined) node = { id, op, inputs, attrs, shape, dtype, name: name! };
    else if (name === undefined) node = { id, op, inputs, attrs, shape, dtype, stage };
    else node = { id, op, inputs, attrs, shape, dtype, name, stage };
    this.nodes.push(node);
    return node;
  }

  /** An input fed at every evaluation. Dimensions may be symbols (e.g. 'B' for the batch). */
  input(name: string, shape: Shape, dtype: DType = 'float32'): Node {
    checkDType(dtype, `input '${name}'`);
    checkShape(shape, `input '${name}'`);
    return this.push('input', [], {}, [...shape], dtype, name);
  }

  /** A trainable parameter with a concrete shape and an initializer (default Glorot uniform). */
  param(name: string, shape: readonly number[], options: { init?: Initializer; dtype?: DType } = {}): Node {
    const dtype = options.dtype ?? 'float32';
    checkDType(dtype, `param '${name}'`);
    checkConcreteShape(shape, `param '${name}'`);
    const init = options.init ?? { kind: 'glorotUniform' };
    return this.push('param', [], { init }, [...shape], dtype, name);
  }

  /** A constant tensor. */
  const(value: Tensor, name?: string): Node {
    return this.push('const', [], { value }, value.shape, value.dtype, name ? name : undefined);
  }

  /** A scalar constant; equal scalars are one node. */
  constant(value: number, dtype: DType): Node {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    let node = this.scalars.get(key);
    if (node === undefined || node.stage !== this.stage) {
      node = this.const(scalar(value, dtype));
      this.scalars.set(key, node);
    }
    return node;
  }

  apply(op: string, inputs: readonly Node[], attrs: Attrs = NO_ATTRS): Node {
    const def = getOp(op);
    checkArity(def, inputs.length, { node: this.nodes.length });
    for (let i = 0; i < inputs.length; i++) {
      const x = inputs[i]!;
      if (!this.owns(x)) {
        throw new GraphError(`${op}: input ${i} (${label(x)}) is not a node of this builder`, {
          op,
          input: i,
        });
      }
    }
    const info = inferType(def, inputs, attrs);
    return this.push(op, idsOf(inputs), attrs, sharedShape(info.shape, inputs), info.dtype);
  }

  private owns(x: Node): boolean {
    return this.nodes[x.id] === x || (this.renamed.has(x) && this.nodes[x.id]?.op === x.op);
  }

  shapeOf(x: Node): Shape {
    return x.shape;
  }

  dtypeOf(x: Node): DType {
    return x.dtype;
  }

  /** Throws if `name` is taken, naming the node that holds it. */
  private claim(name: string): void {
    const holder = this.names.get(name);
    if (holder === undefined) return;
    const other = this.nodes[holder]!;
    throw new GraphError(
      `duplicate node name '${name}': already the name of %${holder} (${other.op}${fmtShape(other.shape)})`,
      { node: name, expected: 'unique names', found: `%${holder}` },
    );
  }

  /** Gives a node a name (unique in the graph); returns the renamed node, which replaces the old one. */
  name<N extends Node>(node: N, name: string): Node {
    if (!this.owns(node)) throw new GraphError(`name: ${label(node)} is not a node of this builder`);
    if (node.name === name) return node;
    this.claim(name);
    if (node.name !== undefined) this.names.delete(node.name);
    this.names.set(name, node.id);
    const current = this.nodes[node.id]!;
    const renamed = { ...current, name };
    this.nodes[node.id] = renamed;
    this.renamed.add(current);
    if (node !== current) this.renamed.add(node);
    return renamed;
  }

  /** Marks a node as a named output of the graph. */
  output(name: string, node: Node): Node {
    if (!this.owns(node)) throw new GraphError(`output: ${label(node)} is not a node of this builder`);
    if (Object.hasOwn(this.outputs, name))
      throw new GraphError(`duplicate output name '${name}'`, { node: name });
    this.outputs[name] = node.id;
    return node;
  }

  /** Runs `body` with every node it creates annotated for stage `stage` (manual placement). */
  onStage<R>(stage: number, body: () => R): R {
    if (!Number.isInteger(stage) || stage < 0)
      throw new InputError(`onStage: expected a stage index >= 0, found ${stage}`);
    const before = this.stage;
    this.stage = stage;
    try {
      return body();
    } finally {
      this.stage = before;
    }
  }

  /** The graph recorded so far, with its outputs: a snapshot, so the builder can go on. */
  build(): Graph {
    return namedGraph([...this.nodes], { ...this.outputs }, namesById(this.names));
  }
}

/** A copy of the names in id order, as `Graph.names` makes them (renames may have come out of order). */
function namesById(names: Map<string, number>): Map<string, number> {
  let last = -1;
  for (const id of names.values()) {
    if (id < last) return new Map([...names].sort((x, y) => x[1] - y[1]));
    last = id;
  }
  return new Map(names);
}

/**
 * The ids of a node's inputs. Note: array literals for one and two inputs, not `new Array(n)`: a
 * literal is allocated inline, and V8 learns to allocate the arrays of a site whose arrays live long
 * (a graph's) where they need not be copied by the collector later.
 */
function idsOf(inputs: readonly Node[]): number[] {
  if (inputs.length === 1) return [inputs[0]!.id];
  if (inputs.length === 2) return [inputs[0]!.id, inputs[1]!.id];
  return inputs.map((x) => x.id);
}

/**
 * A shape equal to an input's is that input's array: shapes are never mutated, and an elementwise
 * node then costs no array of its own (a million-node graph is mostly such nodes).
 */
function sharedShape(shape: Shape, inputs: readonly Node[]): Shape {
  for (let i = 0; i < inputs.length; i++) {
    const other = inputs[i]!.shape;
    if (other === shape || shapesEqual(other, shape)) return other;
  }
  return shape;
}

function checkShape(shape: Shape, where: string): void {
  for (const d of shape as Dim[]) {
    const ok = typeof d === 'string' ? d.length > 0 : Number.isInteger(d) && d >= 0;
    if (!ok)
      throw new GraphError(
        `${where}: bad dimension ${JSON.stringify(d)} (expected an integer >= 0 or a symbol name)`,
        { found: shape },
      );
  }
}
