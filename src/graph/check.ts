import { BackflowError, DTypeError, type ErrorContext, GraphError, OpError, ShapeError } from '../errors.ts';
import { checkArity } from '../ops/arity.ts';
import { inferType } from '../ops/attrs.ts';
import type { OpDef, TypeInfo } from '../ops/op.ts';
import { getOp, hasOp } from '../ops/registry.ts';
import { type Dim, type Shape, shapesEqual } from '../tensor/shape.ts';
import { DTYPES } from '../tensor/tensor.ts';
import { checkLeaf } from './check-leaf.ts';
import { OP } from './columns.ts';
import { Graph, type Node } from './graph.ts';
import { type ErrorClass, nodeError } from './node-error.ts';
import { fmtType, fmtValue, type Printable, printOutputs } from './print.ts';
import '../ops/builtins.ts';
import { maxOf, minOf } from '../util/extent.ts';

/**
 * Validates a graph that comes from elsewhere (deserialized bytes, a hand-written object) and returns
 * it as a `Graph`. Checks, in this order: the structure of every node, references (dangling,
 * cycles, topological order), ops and arity, leaves, names, and finally re-runs every op's shape
 * rule on the declared input types and compares with the declared type. Every error quotes the
 * printed lines around the offending node, and its context names node, op, input, expected, found.
 */
export function checkGraph(graph: unknown): Graph {
  // Note [checks on columns]
  // A graph that holds its nodes as columns (a builder's, Note [builder columns]) is checked on them:
  // making a node object for every node to check it would undo what the columns save (a million-node
  // graph's objects are about 140 MB of heap, kept as long as the graph is). The columns pass
  // decides only that a graph passes; at the first node that may not, the pass over the node objects
  // below runs instead and reports it, as it would have reported it anyway.
  if (graph instanceof Graph && !graph.madeAll && passesOnColumns(graph)) {
    checkOutputs(graph, graph.outputs, graph.size);
    return graph;
  }
  if (!isObject(graph) || !Array.isArray(graph.nodes)) {
    throw new GraphError(`checkGraph: expected {nodes: Node[], outputs}, found ${fmtValue(graph)}`, {
      expected: '{nodes, outputs}',
      found: fmtValue(graph),
    });
  }
  const raw: unknown[] = graph.nodes;
  const outputs: unknown = graph.outputs ?? {};
  const view: Printable = { nodes: raw as Node[], outputs: outputs as Record<string, number> };
  // A Graph is returned as it is: its checked nodes need no copies (they were most of the garbage a
  // check of a million nodes made).
  const copy = !(graph instanceof Graph);
  const nodes = raw.map((node, id) => checkStructure(view, node, id, copy));
  checkOrder(view, nodes);
  const names = new Map<string, number>();
  for (const node of nodes) {
    if (node.name !== undefined) {
      const other = names.get(node.name);
      if (other !== undefined) {
        throw nodeError(
          GraphError,
          view,
          node,
          `duplicate node name "${node.name}": %${other} and %${node.id}`,
          {
            expected: 'unique node names',
            found: [other, node.id],
          },
        );
      }
      names.set(node.name, node.id);
    }
    if (node.op === 'input' || node.op === 'param' || node.op === 'const') checkLeaf(view, node);
    else checkOp(view, nodes, node);
  }
  const checkedOutputs = checkOutputs(view, outputs, nodes.length);
  return graph instanceof Graph ? graph : new Graph(nodes, checkedOutputs);
}

/** Whether `graph` passes every check of the pass over node objects, read from its columns (Note [checks on columns]). */
function passesOnColumns(graph: Graph): boolean {
  const n = graph.size;
  const { inputStart, inputIds, kinds, shapes } = graph.columns;
  const dims = new Set<Shape>();
  const defs = new Map<string, OpDef | null>();
  const names = new Set<string>();
  try {
    for (let id = 0; id < n; id++) {
      const op = graph.opOf(id);
      const dtype = graph.dtypeOf(id);
      const shape = shapes[id]!;
      const attrs = graph.attrsOf(id);
      const name = graph.nameOf(id);
      const stage = graph.stageOf(id);
      if (typeof op !== 'string' || op === '' || (dtype !== 'float32' && dtype !== 'float64')) return false;
      if (!isObject(attrs) || (stage !== undefined && !(Number.isInteger(stage) && stage >= 0))) return false;
      if (!dims.has(shape)) {
        if (!Array.isArray(shape) || !allDims(shape)) return false;
        dims.add(shape);
      }
      if (name !== undefined) {
        if (typeof name !== 'string' || name === '' || names.has(name)) return false;
        names.add(name);
      }
      const from = inputStart[id]!;
      const to = inputStart[id + 1]!;
      for (let e = from; e < to; e++) if (!(inputIds[e]! >= 0 && inputIds[e]! < id)) return false;
      if (kinds[id] !== OP) {
        checkLeaf(graph, graph.nodeAt(id));
        continue;
      }
      let def = defs.get(op);
      if (def === undefined) defs.set(op, (def = hasOp(op) ? getOp(op) : null));
      if (def === null) return false;
      const infos: TypeInfo[] = [];
      for (let e = from; e < to; e++)
        infos.push({ shape: shapes[inputIds[e]!]!, dtype: graph.dtypeOf(inputIds[e]!) });
      checkArity(def, infos.length, { node: id });
      const info = inferType(def, infos, attrs);
      if (info.dtype !== dtype || !shapesEqual(info.shape as Shape, shape)) return false;
    }
  } catch {
    // The pass over node objects says what.
    return false;
  }
  return true;
}

/**
 * The ops of a graph are known where it will run: `unknown(op)` says why an op is not (or null when it
 * is), and the first node of such an op is an OpError quoting it, with `context`. Each op is asked once.
 */
export function checkOpsKnown(
  graph: Graph,
  unknown: (op: string) => string | null,
  context: ErrorContext = {},
): void {
  const known = new Set<string>();
  const kinds = graph.columns.kinds;
  for (let id = 0; id < graph.size; id++) {
    const op = graph.opOf(id);
    if (kinds[id] !== OP || known.has(op)) continue;
    const why = unknown(op);
    if (why !== null) {
      throw nodeError(OpError, graph, graph.nodeAt(id), `%${id}: ${why}`, {
        expected: 'a registered op',
        found: op,
        ...context,
      });
    }
    known.add(op);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isDim(d: unknown): d is Dim {
  return typeof d === 'string' ? d.length > 0 : Number.isInteger(d) && (d as number) >= 0;
}

/**
 * The fields of a node, each of the right type; a fresh Node (its own arrays, no extra fields) if
 * `copy`, else the node itself.
 */
function checkStructure(view: Printable, node: unknown, id: number, copy: boolean): Node {
  if (!isObject(node)) {
    throw nodeError(GraphError, view, { id }, `%${id} is not a node`, {
      expected: '{id, op, inputs, attrs, shape, dtype}',
      found: fmtValue(node),
    });
  }
  // Note: loops and no closure per node, and the error made only when there is one: checkGraph
  // must stay linear and cheap on a million nodes (the graph bench's 1e6 chain: 1.1 s -> 0.14 s
  // with the checks in place below; docs/measurements.md).
  const { op, inputs, attrs, shape, dtype, name, stage } = node;
  if (node.id !== id) throw badField(view, node, id, 'id', `${id}, its index in nodes`, node.id);
  if (typeof op !== 'string' || op === '') throw badField(view, node, id, 'op', 'an op name', op);
  if (!Array.isArray(inputs) || !allIntegers(inputs))
    throw badField(view, node, id, 'inputs', 'an array of node ids', inputs);
  if (!isObject(attrs)) throw badField(view, node, id, 'attrs', 'an object', attrs);
  if (!Array.isArray(shape) || !allDims(shape))
    throw badField(view, node, id, 'shape', 'an array of integers >= 0 and symbol names', shape);
  if (name !== undefined && (typeof name !== 'string' || name === ''))
    throw badField(view, node, id, 'name', 'a non-empty string', name);
  if (stage !== undefined && !(Number.isInteger(stage) && (stage as number) >= 0))
    throw badField(view, node, id, 'stage', 'an integer >= 0', stage);
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw nodeError(
      DTypeError,
      view,
      { id, name, op },
      `%${id} (${op}): unsupported dtype ${fmtValue(dtype)} (expected ${DTYPES.join(' or ')})`,
      { expected: DTYPES, found: dtype },
    );
  }
  for (let k = 0; k < inputs.length; k++) {
    const input = inputs[k] as number;
    if (input < 0 || input >= view.nodes.length) {
      throw nodeError(
        GraphError,
        view,
        { id, name, op },
        `%${id} (${op}): input ${k} refers to %${input}, which does not exist (the graph has ${view.nodes.length} nodes)`,
        { input: k, expected: `a node id in [0, ${view.nodes.length - 1}]`, found: input },
      );
    }
  }
  if (!copy) return node as unknown as Node;
  // The fields in the builder's order (id, op, inputs, attrs, shape, dtype, then name and stage).
  const ins: number[] = [...(inputs as number[])];
  const dims: Dim[] = [...(shape as Dim[])];
  if (name === undefined && stage === undefined) return { id, op, inputs: ins, attrs, shape: dims, dtype };
  if (stage === undefined) return { id, op, inputs: ins, attrs, shape: dims, dtype, name: name as string };
  if (name === undefined) return { id, op, inputs: ins, attrs, shape: dims, dtype, stage: stage as number };
  return { id, op, inputs: ins, attrs, shape: dims, dtype, name: name as string, stage: stage as number };
}

function badField(
  view: Printable,
  node: Record<string, unknown>,
  id: number,
  field: string,
  expected: string,
  found: unknown,
): Error {
  return nodeError(
    GraphError,
    view,
    { id, name: node.name, op: node.op },
    `%${id}: bad ${field} (expected ${expected}, found ${fmtValue(found)})`,
    { field, expected, found },
  );
}

function allIntegers(xs: readonly unknown[]): boolean {
  for (let i = 0; i < xs.length; i++) if (!Number.isInteger(xs[i])) return false;
  return true;
}

function allDims(xs: readonly unknown[]): boolean {
  for (let i = 0; i < xs.length; i++) if (!isDim(xs[i])) return false;
  return true;
}

/** Every input must come before its consumer: a later one is either a cycle or a misordering. */
function checkOrder(view: Printable, nodes: readonly Node[]): void {
  let forward: { id: number; input: number; slot: number } | null = null;
  for (const node of nodes) {
    const slot = node.inputs.findIndex((i) => i >= node.id);
    if (slot >= 0) {
      forward = { id: node.id, input: node.inputs[slot]!, slot };
      break;
    }
  }
  if (forward === null) return;
  const cycle = findCycle(nodes);
  if (cycle !== null) {
    const path = [...cycle, cycle[0]!].map((id) => `%${id}`).join(' -> ');
    const span = maxOf(cycle) - cycle[0]!;
    throw nodeError(
      GraphError,
      view,
      nodes[cycle[0]!]!,
      `cycle: ${path} (each node reads the next; a node's inputs must be earlier nodes)`,
      { expected: 'an acyclic graph', found: cycle },
      undefined,
      Math.min(Math.max(span, 2), 8),
    );
  }
  const node = nodes[forward.id]!;
  throw nodeError(
    GraphError,
    view,
    node,
    `not in topological order: %${node.id} (${node.op}) input ${forward.slot} reads %${forward.input}, which comes after it`,
    { input: forward.slot, expected: `a node id < ${node.id}`, found: forward.input },
  );
}

/**
 * A cycle along input edges, as ids in order (each reads the next, the last reads the first),
 * starting at its smallest id; or null. Iterative, so a million-node graph cannot overflow the stack.
 */
function findCycle(nodes: readonly Node[]): number[] | null {
  const state = new Uint8Array(nodes.length); // 0 unseen, 1 on the path, 2 done
  const path: number[] = [];
  const next: number[] = [];
  for (let root = 0; root < nodes.length; root++) {
    if (state[root] !== 0) continue;
    state[root] = 1;
    path.push(root);
    next.push(0);
    while (path.length > 0) {
      const top = path.length - 1;
      const ins = nodes[path[top]!]!.inputs;
      if (next[top]! < ins.length) {
        const v = ins[next[top]!++]!;
        if (state[v] === 1) {
          const cycle = path.slice(path.indexOf(v));
          const start = cycle.indexOf(minOf(cycle));
          return [...cycle.slice(start), ...cycle.slice(0, start)];
        }
        if (state[v] === 0) {
          state[v] = 1;
          path.push(v);
          next.push(0);
        }
      } else {
        state[path.pop()!] = 2;
        next.pop();
      }
    }
  }
  return null;
}

/** A known op with the right number of inputs, whose shape rule gives the declared type. */
function checkOp(view: Printable, nodes: readonly Node[], node: Node): void {
  const { op, id } = node;
  if (!hasOp(op)) {
    let message = '';
    try {
      getOp(op);
    } catch (err) {
      message = (err as Error).message;
    }
    throw nodeError(OpError, view, node, `%${id}: ${message}`, { expected: 'a registered op', found: op });
  }
  const def = getOp(op);
  // The input nodes are their own type infos (a shape and a dtype), as the builder passes them.
  const infos: TypeInfo[] = [];
  for (let k = 0; k < node.inputs.length; k++) infos.push(nodes[node.inputs[k]!]!);
  let info: TypeInfo;
  try {
    checkArity(def, infos.length, { node: id });
    info = inferType(def, infos, node.attrs);
  } catch (err) {
    const from = infos.map((x) => fmtType(x.dtype, x.shape)).join(', ');
    if (err instanceof BackflowError) {
      // The op's own error (class, op, input, expected, found), placed at this node.
      const { node: _, ...context } = err.context;
      const Class = err.constructor as ErrorClass;
      throw nodeError(Class, view, node, `%${id}: ${err.message} (inputs: ${from})`, context, err);
    }
    throw nodeError(
      GraphError,
      view,
      node,
      `%${id} (${op}): the shape rule failed on inputs ${from} and attrs ${fmtValue(node.attrs)}: ${String(err)}`,
      { expected: 'attributes the op accepts', found: node.attrs },
      err,
    );
  }
  if (info.dtype !== node.dtype || !shapesEqual(info.shape as Shape, node.shape)) {
    const declared = fmtType(node.dtype, node.shape);
    const inferred = fmtType(info.dtype, info.shape);
    const Class = info.dtype !== node.dtype ? DTypeError : ShapeError;
    throw nodeError(
      Class,
      view,
      node,
      `%${id} (${op}): expected ${inferred} (the shape rule on inputs ${infos.map((x) => fmtType(x.dtype, x.shape)).join(', ')}), found ${declared} declared`,
      { expected: inferred, found: declared },
    );
  }
}

function checkOutputs(view: Printable, outputs: unknown, size: number): Record<string, number> {
  if (!isObject(outputs)) {
    throw new GraphError(
      `checkGraph: outputs must be an object {name: node id}, found ${fmtValue(outputs)}`,
      {
        expected: '{name: id}',
        found: fmtValue(outputs),
      },
    );
  }
  const out: Record<string, number> = {};
  for (const [name, id] of Object.entries(outputs)) {
    if (name === '' || !Number.isInteger(id) || (id as number) < 0 || (id as number) >= size) {
      throw new GraphError(
        `output ${JSON.stringify(name)} refers to ${fmtValue(id)}, which is not a node (expected a non-empty name and a node id in [0, ${size - 1}])\n  ${printOutputs(view)}`,
        { node: name, expected: `a node id in [0, ${size - 1}]`, found: id },
      );
    }
    Object.defineProperty(out, name, { value: id, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
