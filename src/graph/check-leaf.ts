import { DTypeError, fmtShape, GraphError, ShapeError } from '../errors.ts';
import { INITIALIZER_FIELDS } from '../tensor/init.ts';
import { isConcrete, shapesEqual } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import { own } from '../util/names.ts';
import type { Node } from './graph.ts';
import { nodeError } from './node-error.ts';
import { fmtValue, type Printable } from './print.ts';

// The checks of checkGraph (check.ts) for the leaves of a graph: inputs, parameters and constants.

/** The attributes of each leaf, as `OpDef.attrs` are an op's: a leaf holds no other. */
const LEAF_ATTRS: Readonly<Record<string, readonly string[]>> = {
  input: [],
  param: ['init'],
  const: ['value'],
};

/** A leaf: no inputs, only its own attributes, a const its tensor, an input or param its name. */
export function checkLeaf(view: Printable, node: Node): void {
  const { op, id } = node;
  if (node.inputs.length > 0) {
    throw nodeError(GraphError, view, node, `%${id}: a ${op} takes no inputs, found ${node.inputs.length}`, {
      expected: 0,
      found: node.inputs.length,
    });
  }
  const known = LEAF_ATTRS[op]!;
  const other = Object.keys(node.attrs).find((k) => !known.includes(k));
  if (other !== undefined) {
    const takes = known.length === 0 ? 'no attributes' : `the attribute ${known.join(', ')}`;
    throw nodeError(
      GraphError,
      view,
      node,
      `%${id}: a${op === 'input' ? 'n' : ''} ${op} takes ${takes}, found ${other}`,
      {
        attr: other,
        expected: known,
        found: other,
      },
    );
  }
  if (op === 'const') {
    const value = node.attrs.value;
    if (!(value instanceof Tensor)) {
      throw nodeError(GraphError, view, node, `%${id}: a const needs attrs.value, a Tensor`, {
        expected: 'a Tensor',
        found: fmtValue(value),
      });
    }
    const storage = value.dtype === 'float32' ? Float32Array : Float64Array;
    if (value.dtype !== node.dtype || !(value.data instanceof storage)) {
      throw nodeError(
        DTypeError,
        view,
        node,
        `%${id}: the const value is ${value.dtype} in a ${value.data.constructor.name}, the node declares ${node.dtype}`,
        { expected: node.dtype, found: value.dtype },
      );
    }
    if (!shapesEqual(value.shape, node.shape)) {
      throw nodeError(
        ShapeError,
        view,
        node,
        `%${id}: the const value has shape ${fmtShape(value.shape)}, the node declares ${fmtShape(node.shape)}`,
        { expected: node.shape, found: value.shape },
      );
    }
    return;
  }
  if (node.name === undefined) {
    throw nodeError(
      GraphError,
      view,
      node,
      `%${id}: an ${op} needs a name (feeds and parameters are bound by name)`,
      {
        expected: 'a unique name',
        found: undefined,
      },
    );
  }
  if (op === 'param') {
    if (!isConcrete(node.shape)) {
      throw nodeError(
        ShapeError,
        view,
        node,
        `param '${node.name}': expected a concrete shape, found ${fmtShape(node.shape)}`,
        { expected: 'integer dimensions', found: node.shape },
      );
    }
    checkInit(view, node);
  }
}

/** An initializer of a known kind, with the finite numbers its kind takes and no other field. */
function checkInit(view: Printable, node: Node): void {
  const init = node.attrs.init;
  const bad = (why: string, expected: string) =>
    nodeError(GraphError, view, node, `param '${node.name}': ${why}`, { expected, found: init });
  if (typeof init !== 'object' || init === null || typeof (init as { kind?: unknown }).kind !== 'string')
    throw bad(`bad attrs.init ${fmtValue(init)}`, 'an initializer {kind, ...numbers}');
  const { kind, ...numbers } = init as { kind: string };
  const fields = own(INITIALIZER_FIELDS, kind);
  if (fields === undefined)
    throw bad(`unknown initializer '${kind}'`, `one of ${Object.keys(INITIALIZER_FIELDS).join(', ')}`);
  const takes = (k: string) => fields.includes(k) || fields.includes(`${k}?`);
  const expected = `{kind: ${kind}${fields.map((f) => `, ${f}: a finite number`).join('')}}`;
  if (
    !Object.entries(numbers).every(([k, v]) => takes(k) && Number.isFinite(v)) ||
    !fields.every((f) => f.endsWith('?') || Object.hasOwn(numbers, f))
  )
    throw bad(`bad attrs.init ${fmtValue(init)} (expected ${expected})`, expected);
}
