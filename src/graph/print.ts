import { GraphError } from '../errors.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Graph } from './graph.ts';
import { StoredNode } from './store.ts';

/**
 * The printer of the IR, one line per node:
 *
 * ```text
 * %0 = input "x" : f32[B,784]
 * %1 = param "w1" glorotUniform : f32[784,256]
 * %2 = const 0.5 : f32[]
 * %3 "h1" = matmul %0 %1 {transB: true} : f32[B,256] @stage 1
 * outputs: loss=%9, grad:w1=%20
 * ```
 *
 * Attributes print with sorted keys; `false` flags are left out (every boolean attribute of the
 * built-in ops defaults to false); tensors and long arrays are never dumped whole. The printer reads
 * its input defensively: checkGraph prints graphs it has not validated yet.
 */
export interface PrintOptions {
  /** Print only the lines within `radius` of this node id, the node itself marked with `>`. */
  around?: number;
  /** How many nodes either side of `around` to print (default 2). */
  radius?: number;
}

/** What the printer reads of a graph. */
export type Printable = Pick<Graph, 'nodes' | 'outputs'>;

const SMALL_CONST = 8;
const MAX_ITEMS = 16;
const MAX_DEPTH = 4;
const MAX_STRING = 40;

/**
 * The graph as text, one line per node (`%3 = matmul %0 %2 : f32[B,16]`), then its outputs; with
 * `around`, only the lines near one node (how errors quote a graph).
 */
export function printGraph(graph: Printable, options: PrintOptions = {}): string {
  const nodes = graph.nodes as readonly unknown[];
  const { around, radius = 2 } = options;
  if (around === undefined) {
    const lines = nodes.map((node, id) => formatNode(node, id));
    lines.push(printOutputs(graph));
    return lines.join('\n');
  }
  if (!Number.isInteger(around) || around < 0 || around >= nodes.length)
    throw new GraphError(`printGraph: no node %${around} (the graph has ${nodes.length} nodes)`, {
      node: around,
      expected: `an id in [0, ${nodes.length - 1}]`,
      found: around,
    });
  const first = Math.max(0, around - radius);
  const last = Math.min(nodes.length - 1, around + radius);
  const lines: string[] = [];
  if (first > 0) lines.push('  ...');
  for (let id = first; id <= last; id++)
    lines.push(`${id === around ? '>' : ' '} ${formatNode(nodes[id], id)}`);
  if (last < nodes.length - 1) lines.push('  ...');
  return lines.join('\n');
}

/** The printed line of one node. */
export function printNode(graph: Printable, id: number): string {
  if (!Number.isInteger(id) || id < 0 || id >= graph.nodes.length)
    throw new GraphError(`printNode: no node %${id} (the graph has ${graph.nodes.length} nodes)`, {
      node: id,
      found: id,
    });
  return formatNode(graph.nodes[id], id);
}

/** The closing line: `outputs: loss=%9, grad:w1=%20`. */
export function printOutputs(graph: Printable): string {
  const outputs: unknown = graph.outputs;
  if (!isRecord(outputs)) return `outputs: ${fmtValue(outputs)}`;
  const entries = Object.entries(outputs);
  if (entries.length === 0) return 'outputs: none';
  const name = (s: string) => (/^[\w:.\-/]+$/.test(s) ? s : JSON.stringify(s));
  return `outputs: ${entries.map(([k, id]) => `${name(k)}=${fmtRef(id)}`).join(', ')}`;
}

/** The short form of a dtype: f32, f64 (anything else as it is, for errors about it). */
export function fmtDType(dtype: unknown): string {
  if (dtype === 'float32') return 'f32';
  if (dtype === 'float64') return 'f64';
  return typeof dtype === 'string' ? dtype : fmtValue(dtype);
}

/** A type as the printer shows it: `f32[B,784]`. */
export function fmtType(dtype: unknown, shape: unknown): string {
  const dims = Array.isArray(shape) ? `[${shape.map((d) => fmtValue(d)).join(',')}]` : `<${fmtValue(shape)}>`;
  return `${fmtDType(dtype)}${dims}`;
}

function formatNode(node: unknown, index: number): string {
  if (!isRecord(node) && !(node instanceof StoredNode)) return `%${index} = <not a node: ${fmtValue(node)}>`;
  const { id, op, inputs, attrs, shape, dtype, name, stage } = node as Record<string, unknown>;
  const idNote = id === index ? '' : ` <id ${fmtValue(id)}>`;
  const rest: Record<string, unknown> = isRecord(attrs) ? { ...attrs } : {};
  const named = op === 'input' || op === 'param';
  let rhs: string;
  if (named) {
    rhs = `${op} ${fmtName(name)}`;
    if (op === 'param') {
      rhs += ` ${fmtInit(rest.init)}`;
      delete rest.init;
    }
  } else if (op === 'const') {
    rhs = `const ${fmtConst(rest.value)}`;
    delete rest.value;
  } else {
    const refs = Array.isArray(inputs) ? inputs.map(fmtRef) : [`<inputs ${fmtValue(inputs)}>`];
    rhs = [typeof op === 'string' ? op : `<op ${fmtValue(op)}>`, ...refs].join(' ');
  }
  if (!isRecord(attrs)) rhs += ` <attrs ${fmtValue(attrs)}>`;
  else if (Object.keys(rest).length > 0) {
    const shown = fmtRecord(rest, 0);
    if (shown !== '{}') rhs += ` ${shown}`;
  }
  if (named && Array.isArray(inputs) && inputs.length > 0) rhs += ` <inputs ${inputs.map(fmtRef).join(' ')}>`;
  const head = `%${index}${idNote}${!named && name !== undefined ? ` ${fmtName(name)}` : ''}`;
  const stageNote = stage === undefined ? '' : ` @stage ${fmtValue(stage)}`;
  return `${head} = ${rhs} : ${fmtType(dtype, shape)}${stageNote}`;
}

function fmtRef(id: unknown): string {
  return typeof id === 'number' ? `%${id}` : `<${fmtValue(id)}>`;
}

function fmtName(name: unknown): string {
  return typeof name === 'string' ? JSON.stringify(name) : `<name ${fmtValue(name)}>`;
}

function fmtInit(init: unknown): string {
  if (!isRecord(init) || typeof init.kind !== 'string') return `<init ${fmtValue(init)}>`;
  const { kind, ...options } = init;
  return Object.keys(options).length === 0 ? kind : `${kind}${fmtRecord(options, 0)}`;
}

function fmtConst(value: unknown): string {
  if (!(value instanceof Tensor)) return `<value ${fmtValue(value)}>`;
  if (value.size > SMALL_CONST) return fmtTensorType(value);
  const item = value.dtype === 'float32' ? fmtFloat32 : fmtNumber;
  const nested = (dim: number, offset: number, stride: number): string => {
    if (dim === value.rank) return item(value.data[offset]!);
    const n = value.shape[dim]!;
    const inner = stride / n;
    return `[${Array.from({ length: n }, (_, i) => nested(dim + 1, offset + i * inner, inner)).join(',')}]`;
  };
  return nested(0, 0, value.size);
}

function fmtTensorType(t: Tensor): string {
  return `<${fmtType(t.dtype, t.shape)}>`;
}

/** A number as written: -0, NaN and the infinities spelled out. */
function fmtNumber(x: number): string {
  return Object.is(x, -0) ? '-0' : String(x);
}

/** The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612). */
function fmtFloat32(x: number): string {
  if (!Number.isFinite(x) || x === 0) return fmtNumber(x);
  for (let p = 1; p < 9; p++) {
    const s = Number(x.toPrecision(p));
    if (Math.fround(s) === x) return String(s);
  }
  return String(x);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function fmtRecord(record: Record<string, unknown>, depth: number): string {
  if (depth >= MAX_DEPTH) return '{...}';
  const parts: string[] = [];
  for (const key of Object.keys(record).sort()) {
    const v = record[key];
    if (v === false || v === undefined) continue;
    parts.push(`${/^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key)}: ${fmtValue(v, depth + 1)}`);
  }
  return `{${parts.join(', ')}}`;
}

/** Any attribute value, compactly and deterministically. */
export function fmtValue(v: unknown, depth = 0): string {
  switch (typeof v) {
    case 'number':
      return fmtNumber(v);
    case 'string': {
      if (/^[A-Za-z_][\w]*$/.test(v) && v.length <= MAX_STRING) return v;
      const s = JSON.stringify(v);
      return s.length <= MAX_STRING + 2 ? s : `${s.slice(0, MAX_STRING)}..."`;
    }
    case 'bigint':
      return `${v}n`;
    case 'boolean':
    case 'undefined':
      return String(v);
    case 'function':
    case 'symbol':
      return `<${typeof v}>`;
  }
  if (v === null) return 'null';
  if (v instanceof Tensor) return fmtTensorType(v);
  if (Array.isArray(v)) {
    if (depth >= MAX_DEPTH) return '[...]';
    const shown = v.slice(0, MAX_ITEMS).map((x) => fmtValue(x, depth + 1));
    if (v.length > MAX_ITEMS) shown.push(`...+${v.length - MAX_ITEMS}`);
    return `[${shown.join(',')}]`;
  }
  if (isRecord(v)) return fmtRecord(v, depth);
  if (ArrayBuffer.isView(v)) return `<${v.constructor.name}(${v.byteLength} bytes)>`;
  return `<${(v as object).constructor?.name ?? 'object'}>`;
}
