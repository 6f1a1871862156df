import { DTypeError, fmtShape, InputError, ShapeError } from '../errors.ts';
import { type Graph, label, type Node } from '../graph/graph.ts';
import { elementwise, kernelOf } from '../ops/eager.ts';
import type { Attrs, OpDef, RunContext } from '../ops/op.ts';
import { getOp } from '../ops/registry.ts';
import type { Dim, Shape } from '../tensor/shape.ts';
import { type Tensor, Tensor as TensorClass } from '../tensor/tensor.ts';
import { own } from '../util/names.ts';
import { sharedColumn } from '../util/shared-memory.ts';

/** Tensors by name: feeds by input name, parameters by parameter name, results by output name. */
export type TensorMap = Readonly<Record<string, Tensor>>;

/** Values of the symbolic dimensions for one evaluation (e.g. B = 32), bound from the feeds. */
export type Bindings = ReadonlyMap<string, number>;

/**
 * Checks every needed input's feed (present, a tensor, dtype, rank, dimensions) and binds the
 * symbolic dimensions. A symbol bound twice must get the same size.
 */
export function bindFeeds(inputs: readonly Node[], feeds: TensorMap): Map<string, number> {
  const bindings = new Map<string, number>();
  for (const node of inputs) {
    const name = node.name!;
    const feed = own(feeds, name);
    if (!(feed instanceof TensorClass)) {
      throw new InputError(
        `feed '${name}': ${feed === undefined ? 'missing' : 'not a Tensor'} (expected ${node.dtype}${fmtShape(node.shape)})`,
        {
          node: name,
          expected: node.shape,
          found: feed === undefined ? 'nothing' : typeof feed,
        },
      );
    }
    const mismatch = () =>
      new ShapeError(
        `feed '${name}': expected ${node.dtype}${fmtShape(node.shape)}, found ${feed.dtype}${fmtShape(feed.shape)}`,
        {
          node: name,
          expected: node.shape,
          found: feed.shape,
        },
      );
    if (feed.dtype !== node.dtype) {
      throw new DTypeError(
        `feed '${name}': expected ${node.dtype}${fmtShape(node.shape)}, found ${feed.dtype}${fmtShape(feed.shape)}`,
        { node: name, expected: node.dtype, found: feed.dtype },
      );
    }
    if (feed.shape.length !== node.shape.length) throw mismatch();
    node.shape.forEach((d, i) => {
      const actual = feed.shape[i]!;
      if (typeof d === 'number') {
        if (d !== actual) throw mismatch();
      } else {
        const bound = bindings.get(d);
        if (bound === undefined) bindings.set(d, actual);
        else if (bound !== actual) {
          throw new ShapeError(
            `feed '${name}': dimension ${d} is ${actual} here but ${bound} in another feed`,
            {
              node: name,
              expected: bound,
              found: actual,
            },
          );
        }
      }
    });
  }
  return bindings;
}

/** Refuses a feed that names no input of the graph: a misspelt name would otherwise go unnoticed. */
export function checkFeedNames(inputs: readonly Node[], feeds: TensorMap): void {
  const names = inputs.map((n) => n.name!);
  for (const name of Object.keys(feeds)) {
    if (!names.includes(name)) {
      throw new InputError(`feed '${name}': not an input of the graph (inputs: ${names.join(', ')})`, {
        node: name,
        expected: names,
        found: name,
      });
    }
  }
}

/** The value of a parameter, checked against the node's dtype and shape. */
export function paramValue(node: Node, params: TensorMap): Tensor {
  const name = node.name!;
  const value = own(params, name);
  if (!(value instanceof TensorClass)) {
    throw new InputError(
      `parameter '${name}': ${value === undefined ? 'missing' : 'not a Tensor'} (expected ${node.dtype}${fmtShape(node.shape)})`,
      {
        node: name,
        expected: node.shape,
        found: value === undefined ? 'nothing' : typeof value,
      },
    );
  }
  if (value.dtype !== node.dtype) {
    throw new DTypeError(
      `parameter '${name}': expected ${node.dtype}${fmtShape(node.shape)}, found ${value.dtype}${fmtShape(value.shape)}`,
      { node: name, expected: node.dtype, found: value.dtype },
    );
  }
  if (value.shape.length !== node.shape.length || value.shape.some((d, i) => d !== node.shape[i])) {
    throw new ShapeError(
      `parameter '${name}': expected ${node.dtype}${fmtShape(node.shape)}, found ${value.dtype}${fmtShape(value.shape)}`,
      {
        node: name,
        expected: node.shape,
        found: value.shape,
      },
    );
  }
  return value;
}

/**
 * The values of a graph's parameters by id, each checked by `paramValue` (`partial`: those given), and
 * no name that is not a parameter's (InputError, its message starting with `where`).
 */
export function paramValues(
  graph: Graph,
  params: TensorMap,
  where: string,
  partial = false,
): Map<number, Tensor> {
  const out = new Map<number, Tensor>();
  for (const node of graph.params()) {
    if (partial && own(params, node.name!) === undefined) continue;
    out.set(node.id, paramValue(node, params));
  }
  for (const name of Object.keys(params)) {
    const node = graph.names().get(name);
    if (node === undefined || graph.opOf(node) !== 'param') {
      throw new InputError(`${where}: '${name}' is not a parameter of the graph`, {
        node: name,
        expected: graph.params().map((n) => n.name),
      });
    }
  }
  return out;
}

export function resolveShape(shape: Shape, bindings: Bindings, where: string): number[] {
  return shape.map((d: Dim) => {
    if (typeof d === 'number') return d;
    const v = bindings.get(d);
    if (v === undefined)
      throw new ShapeError(`${where}: symbolic dimension '${d}' is not bound by any feed`, { found: d });
    return v;
  });
}

/** Attributes with their shape-valued entries (the op's `shapeAttrs`) resolved against the bindings. */
export function resolveAttrs(def: OpDef, attrs: Attrs, bindings: Bindings): Attrs {
  const keys = def.shapeAttrs;
  if (keys === undefined || bindings.size === 0) return attrs;
  const out: Record<string, unknown> = { ...attrs };
  for (const k of keys) {
    const v = attrs[k];
    if (Array.isArray(v) && v.some((d) => typeof d === 'string'))
      out[k] = resolveShape(v as Dim[], bindings, def.name);
  }
  return out;
}

/**
 * Computes one non-leaf node from its input values, in the run `run` (Note [run context] in
 * src/ops/step-key.ts). The result is checked against the node's declared dtype and shape, so a
 * custom op that lies about its shape is caught where it happens.
 */
export function computeNode(
  node: Node,
  inputs: readonly Tensor[],
  bindings: Bindings,
  run: RunContext,
  def: OpDef = getOp(node.op),
): Tensor {
  // A built-in elementwise op's kernel directly, as eager ops call it (Note [eager fast path]): its
  // forward makes the same call, and reading `forward` and `shapeAttrs` of definitions of many
  // shapes costs more than the kernel on a small tensor.
  const kernel = kernelOf(node.op);
  let out = kernel === null ? null : elementwise(kernel, inputs);
  if (out === null) {
    const attrs = resolveAttrs(def, node.attrs, bindings);
    try {
      out = def.forward(inputs, attrs, run);
    } catch (err) {
      if (err instanceof Error && 'context' in err) {
        (err as { context: Record<string, unknown> }).context.node ??= label(node);
      }
      throw err;
    }
  }
  const shape = node.shape;
  let ok = out.dtype === node.dtype && out.shape.length === shape.length;
  for (let i = 0; ok && i < shape.length; i++) {
    const d = shape[i]!;
    ok = out.shape[i] === (typeof d === 'number' ? d : bindings.get(d));
  }
  if (!ok) {
    throw new ShapeError(
      `${node.op} at ${label(node)}: forward returned ${out.dtype}${fmtShape(out.shape)}, expected ${node.dtype}${fmtShape(shape)}`,
      { op: node.op, node: label(node), expected: shape, found: out.shape },
    );
  }
  return out;
}

/** The nodes the given outputs depend on, ascending (a mask over node ids). */
export function ancestors(graph: Graph, roots: readonly number[]): Uint8Array {
  // A plan ships it to worker threads (Note [columns in shared memory]).
  const mark = sharedColumn(Uint8Array, graph.size);
  let top = -1;
  for (const r of roots) {
    mark[r] = 1;
    if (r > top) top = r;
  }
  const { inputStart, inputIds } = graph.columns;
  for (let id = top; id >= 0; id--) {
    if (mark[id] === 0) continue;
    for (let e = inputStart[id]!; e < inputStart[id + 1]!; e++) mark[inputIds[e]!] = 1;
  }
  return mark;
}
