import { GraphError, InputError } from '../errors.ts';
import { checkArity } from '../ops/arity.ts';
import type { Attrs } from '../ops/op.ts';
import { Ops } from '../ops/ops.ts';
import { getOp } from '../ops/registry.ts';
import type { Initializer } from '../tensor/init.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { checkConcreteShape } from '../tensor/shape.ts';
import { checkDType, type DType, scalar, type Tensor } from '../tensor/tensor.ts';
import { Graph, label, type Node } from './graph.ts';
import '../ops/builtins.ts';

/**
 * Builds a graph, one method per op (inherited from `Ops`): each call checks its shapes at once and
 * appends a node, so nodes are in topological order by construction.
 *
 *   const b = new GraphBuilder();
 *   const x = b.input('x', ['B', 784]);
 *   const w = b.param('w', [784, 10], { init: { kind: 'glorotUniform' } });
 *   b.output('loss', b.softmaxCrossEntropy(b.matmul(x, w), b.input('y', ['B'])));
 *   const graph = b.build();
 */
export class GraphBuilder extends Ops<Node> {
  private readonly nodes: Node[] = [];
  private readonly outputs: Record<string, number> = {};
  private readonly names = new Set<string>();
  private readonly scalars = new Map<string, Node>();
  private stage: number | undefined;
  /** Every node object this builder handed out, renamed versions included. */
  private readonly issued = new WeakSet<Node>();

  /** A builder that continues an existing graph (its nodes keep their ids). */
  static from(graph: Graph): GraphBuilder {
    const b = new GraphBuilder();
    for (const n of graph.nodes) {
      b.nodes.push(n);
      b.issued.add(n);
      if (n.name !== undefined) b.names.add(n.name);
    }
    Object.assign(b.outputs, graph.outputs);
    return b;
  }

  get size(): number {
    return this.nodes.length;
  }

  /** A node of this builder by id or name (or output name). */
  node(ref: number | string): Node {
    const id =
      typeof ref === 'number' ? ref : (this.nodes.find((n) => n.name === ref)?.id ?? this.outputs[ref]);
    const node = id === undefined ? undefined : this.nodes[id];
    if (node === undefined)
      throw new GraphError(`no node ${JSON.stringify(ref)} in this builder`, { node: ref });
    return node;
  }

  private push(node: Omit<Node, 'id'>): Node {
    if (node.name !== undefined) {
      if (this.names.has(node.name)) {
        throw new GraphError(`duplicate node name '${node.name}'`, {
          node: node.name,
          expected: 'unique names',
        });
      }
      this.names.add(node.name);
    }
    const full: Node = {
      id: this.nodes.length,
      ...node,
      ...(this.stage !== undefined ? { stage: this.stage } : {}),
    };
    this.nodes.push(full);
    this.issued.add(full);
    return full;
  }

  /** An input fed at every evaluation. Dimensions may be symbols (e.g. 'B' for the batch). */
  input(name: string, shape: Shape, dtype: DType = 'float32'): Node {
    checkDType(dtype, `input '${name}'`);
    checkShape(shape, `input '${name}'`);
    return this.push({ op: 'input', inputs: [], attrs: {}, shape: [...shape], dtype, name });
  }

  /** A trainable parameter with a concrete shape and an initializer (default Glorot uniform). */
  param(name: string, shape: readonly number[], options: { init?: Initializer; dtype?: DType } = {}): Node {
    const dtype = options.dtype ?? 'float32';
    checkDType(dtype, `param '${name}'`);
    checkConcreteShape(shape, `param '${name}'`);
    const init = options.init ?? { kind: 'glorotUniform' };
    return this.push({ op: 'param', inputs: [], attrs: { init }, shape: [...shape], dtype, name });
  }

  /** A constant tensor. */
  const(value: Tensor, name?: string): Node {
    return this.push({
      op: 'const',
      inputs: [],
      attrs: { value },
      shape: value.shape,
      dtype: value.dtype,
      ...(name ? { name } : {}),
    });
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

  apply(op: string, inputs: readonly Node[], attrs: Attrs = {}): Node {
    const def = getOp(op);
    checkArity(def, inputs.length, { node: this.nodes.length });
    for (const [i, x] of inputs.entries()) {
      if (!this.owns(x)) {
        throw new GraphError(`${op}: input ${i} (${label(x)}) is not a node of this builder`, {
          op,
          input: i,
        });
      }
    }
    const info = def.infer(inputs, attrs);
    return this.push({ op, inputs: inputs.map((x) => x.id), attrs, shape: info.shape, dtype: info.dtype });
  }

  private owns(x: Node): boolean {
    return this.nodes[x.id] === x || (this.issued.has(x) && this.nodes[x.id]?.op === x.op);
  }

  shapeOf(x: Node): Shape {
    return x.shape;
  }

  dtypeOf(x: Node): DType {
    return x.dtype;
  }

  /** Gives a node a name (unique in the graph); returns the renamed node, which replaces the old one. */
  name<N extends Node>(node: N, name: string): Node {
    if (!this.owns(node)) throw new GraphError(`name: ${label(node)} is not a node of this builder`);
    if (node.name === name) return node;
    if (this.names.has(name)) throw new GraphError(`duplicate node name '${name}'`, { node: name });
    if (node.name !== undefined) this.names.delete(node.name);
    this.names.add(name);
    const renamed = { ...this.nodes[node.id]!, name };
    this.nodes[node.id] = renamed;
    this.issued.add(renamed);
    return renamed;
  }

  /** Marks a node as a named output of the graph. */
  output(name: string, node: Node): Node {
    if (!this.owns(node)) throw new GraphError(`output: ${label(node)} is not a node of this builder`);
    if (name in this.outputs) throw new GraphError(`duplicate output name '${name}'`, { node: name });
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

  build(): Graph {
    return new Graph([...this.nodes], { ...this.outputs });
  }
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
