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
import { Graph, label, type Node } from './graph.ts';
import { NodeStore, StoredNode } from './store.ts';
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
  /** What it has recorded (Note [builder columns]); `from` gives it the graph it continues. */
  private store = new NodeStore();
  private readonly outputs = dict<number>();
  /** Node ids by name, and names by id. */
  private readonly names = new Map<string, number>();
  private readonly labels = new Map<number, string>();
  private readonly scalars = new Map<string, Node>();
  private stage: number | undefined;

  /** A builder that continues an existing graph (its nodes keep their ids, and stay nodes of the builder). */
  static from(graph: Graph): GraphBuilder {
    const b = new GraphBuilder();
    const name = (id: number, label: string) => {
      b.names.set(label, id);
      b.labels.set(id, label);
    };
    const continued = graph.continuing();
    if (continued !== null) {
      // A builder's graph: its columns copied whole.
      b.store = continued.store;
      for (const [id, label] of continued.labels) name(id, label);
    } else {
      b.store = new NodeStore(graph);
      const read = graph.reader();
      for (let id = 0; id < graph.size; id++) {
        const n = read(id);
        b.store.push(n.op, n.inputs, n);
        if (n.name !== undefined) name(id, n.name);
      }
    }
    Object.assign(b.outputs, graph.outputs);
    return b;
  }

  /** The number of nodes recorded so far. */
  get size(): number {
    return this.store.size;
  }

  protected override nextId(): number {
    return this.store.size;
  }

  /** A node of this builder by id or name (or output name). */
  node(ref: number | string): Node {
    const id =
      typeof ref === 'number'
        ? ref
        : (this.names.get(ref) ?? (Object.hasOwn(this.outputs, ref) ? this.outputs[ref] : undefined));
    if (id === undefined || !(Number.isInteger(id) && id >= 0 && id < this.store.size))
      throw new GraphError(`no node ${JSON.stringify(ref)} in this builder`, { node: ref });
    return this.store.node(id, this.labels.get(id));
  }

  /**
   * A handle on node id that no graph keeps (`NodeStore.handle`): for a pass over many nodes of the
   * graph this builder continues that holds each only while it runs. @internal
   */
  handle(id: number): Node {
    return this.store.handle(id, this.labels.get(id));
  }

  // The hot path of building a large graph: one call records a node into the columns and returns the
  // caller's handle (Note [builder columns]).
  private push(
    op: string,
    inputs: readonly number[],
    attrs: Attrs,
    shape: Shape,
    dtype: DType,
    name?: string,
  ): Node {
    const store = this.store;
    if (name !== undefined) {
      this.claim(name);
      this.names.set(name, store.size);
      this.labels.set(store.size, name);
    }
    const fields = { attrs, shape, dtype, name, stage: this.stage };
    return new StoredNode(store, store.push(op, inputs, fields), op, inputs, fields);
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
    checkArity(def, inputs.length, { node: this.store.size });
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
    return this.store.owns(x);
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
    const store = this.store;
    throw new GraphError(
      `duplicate node name '${name}': already the name of %${holder} (${store.op(holder)}${fmtShape(store.shape(holder))})`,
      { node: name, expected: 'unique names', found: `%${holder}` },
    );
  }

  /**
   * Gives a node a name (unique in the graph); returns the node under its new name. Handles on it from
   * before stay nodes of this builder; graphs built before keep the old name.
   */
  name<N extends Node>(node: N, name: string): Node {
    if (!this.owns(node)) throw new GraphError(`name: ${label(node)} is not a node of this builder`);
    const id = node.id;
    const before = this.labels.get(id);
    if (before === name) return node.name === name ? node : this.store.node(id, name);
    this.claim(name);
    if (before !== undefined) this.names.delete(before);
    this.names.set(name, id);
    this.labels.set(id, name);
    return this.store.node(id, name);
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
    const names = namesById(this.names);
    const labels = new Map(this.labels);
    return Graph.fromSource(this.store.source(names, labels), { ...this.outputs }, this.store.columns());
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
 * The ids of a node's inputs: the handle's `inputs`, which the store copies into its columns. Array
 * literals for one and two inputs, not `new Array(n)`: a literal is allocated inline.
 */
function idsOf(inputs: readonly Node[]): number[] {
  if (inputs.length === 1) return [inputs[0]!.id];
  if (inputs.length === 2) return [inputs[0]!.id, inputs[1]!.id];
  return inputs.map((x) => x.id);
}

/**
 * A shape equal to an input's is that input's array: shapes are never mutated, and an elementwise
 * node then costs no array of its own and no new entry in the store's table of shapes (a
 * million-node graph is mostly such nodes).
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
