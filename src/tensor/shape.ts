import { fmtFound, fmtShape, OpError, ShapeError } from '../errors.ts';

/** A dimension: a size, or a symbol (e.g. 'B' for a batch dimension bound when a graph runs). */
export type Dim = number | string;
/** A possibly symbolic shape, as graphs carry them. */
export type Shape = readonly Dim[];
/** A shape of numbers only, as tensors carry them. */
export type ConcreteShape = readonly number[];

export function isConcrete(shape: Shape): shape is ConcreteShape {
  for (const d of shape) if (typeof d !== 'number') return false;
  return true;
}

export function sizeOf(shape: ConcreteShape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Row-major strides of a concrete shape. */
export function stridesOf(shape: ConcreteShape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/**
 * NumPy broadcasting of two shapes, symbols included: dimensions are aligned from the right and
 * must be equal or 1. Returns null when they do not broadcast.
 */
export function tryBroadcastShapes(a: Shape, b: Shape): Dim[] | null {
  const rank = Math.max(a.length, b.length);
  const out = new Array<Dim>(rank);
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)]!;
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)]!;
    if (da === db || db === 1) out[i] = da;
    else if (da === 1) out[i] = db;
    else return null;
  }
  return out;
}

/**
 * `tryBroadcastShapes`, but `a` or `b` itself when it is the result (never to be mutated: shapes are
 * shared), so the common elementwise case, equal shapes or a scalar operand, makes no array.
 */
export function broadcastShapeOf<S extends Shape>(a: S, b: S): S | null {
  if (coversShape(a, b)) return a;
  if (coversShape(b, a)) return b;
  return tryBroadcastShapes(a, b) as Shape as S | null;
}

/** Whether `b` broadcasts to `a` unchanged: no longer, and each trailing dimension 1 or a's. */
function coversShape(a: Shape, b: Shape): boolean {
  if (b.length > a.length) return false;
  const lead = a.length - b.length;
  for (let i = 0; i < b.length; i++) if (b[i] !== 1 && b[i] !== a[lead + i]) return false;
  return true;
}

/**
 * The shape two shapes broadcast to (NumPy's rules; a symbolic dimension matches itself or 1); a
 * ShapeError naming `where.op` if they do not.
 */
export function broadcastShapes(a: Shape, b: Shape, where: { op?: string } = {}): Dim[] {
  const out = tryBroadcastShapes(a, b);
  if (out === null) {
    throw new ShapeError(
      `${where.op ?? 'broadcast'}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast ` +
        '(expected each pair of trailing dimensions to be equal or 1)',
      { ...where, expected: 'broadcastable shapes', found: [a, b] },
    );
  }
  return out;
}

/**
 * The axes a gradient of shape `from` must be summed over to come back to `to` (which broadcasts
 * to `from`): the leading axes `from` has more of, and the axes where `to` is 1 and `from` is not.
 */
export function reducedAxes(from: Shape, to: Shape): number[] {
  const lead = from.length - to.length;
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    if (i < lead) axes.push(i);
    else if (to[i - lead] === 1 && from[i] !== 1) axes.push(i);
  }
  return axes;
}

/**
 * One possibly negative axis normalized against a rank: it must be an integer (else an OpError
 * naming attribute `attr`) in [-rank, rank) (else a ShapeError).
 */
export function normalizeAxis(axis: unknown, rank: number, op: string, attr = 'axis'): number {
  if (!Number.isInteger(axis)) {
    throw new OpError(`${op}: attribute ${attr}: expected an integer axis, found ${fmtFound(axis)}`, {
      op,
      attr,
      expected: 'an integer axis',
      found: axis,
    });
  }
  const a = axis as number;
  if (a < -rank || a >= rank) {
    throw new ShapeError(
      `${op}: axis ${a} is out of range for rank ${rank} (expected ${-rank}..${rank - 1})`,
      {
        op,
        expected: `axis in [${-rank}, ${rank - 1}]`,
        found: a,
      },
    );
  }
  return a < 0 ? a + rank : a;
}

/** Normalizes possibly negative axes (one, or an array; all when undefined), checking range and duplicates. */
export function normalizeAxes(
  axes: number | readonly number[] | undefined,
  rank: number,
  op: string,
): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list: readonly unknown[] = Array.isArray(axes) ? axes : [axes];
  if (!list.every((a) => Number.isInteger(a))) {
    const expected = 'an integer axis or an array of them';
    throw new OpError(`${op}: attribute axes: expected ${expected}, found ${fmtFound(axes)}`, {
      op,
      attr: 'axes',
      expected,
      found: axes,
    });
  }
  const out: number[] = [];
  for (const a of list) {
    const n = normalizeAxis(a, rank, op, 'axes');
    if (out.includes(n)) throw new ShapeError(`${op}: axis ${a} is given twice`, { op, found: list });
    out.push(n);
  }
  return out.sort((x, y) => x - y);
}

/** Checks a concrete shape: non-negative integer dimensions. */
export function checkConcreteShape(shape: readonly unknown[], where: string): asserts shape is number[] {
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new ShapeError(
        `${where}: expected a shape of non-negative integers, found ${JSON.stringify(shape)}`,
        {
          expected: 'non-negative integer dimensions',
          found: shape,
        },
      );
    }
  }
}

// Note [row layouts]
// The elementwise kernels run the common broadcasts as tight loops over the output seen as a
// rows x cols matrix, each operand read one of four ways: `full` (all n elements, row r at r * cols),
// `scalar` (one value), `tile` (cols values, the same for every row: a bias [C] against [..., C], a
// mask [T, T] against [B, H, T, T]) or `column` (one value per row: a per-row statistic [..., 1]
// against [..., C], as layer norm's mean and softmax's gradient take). The layout depends on shapes
// only; any other broadcast walks the strides.

/** How an operand is read against the output viewed as rows x cols (Note [row layouts]). */
export type RowOperand = 'full' | 'scalar' | 'tile' | 'column';

/** The output as rows x cols and how each of the two operands is read (Note [row layouts]). */
export interface RowLayout {
  readonly rows: number;
  readonly cols: number;
  readonly a: RowOperand;
  readonly b: RowOperand;
}

/** Whether `t`, leading 1s dropped, equals the trailing dimensions of `out`. */
function isSuffix(t: ConcreteShape, out: ConcreteShape): boolean {
  let first = 0;
  while (first < t.length && t[first] === 1) first++;
  const len = t.length - first;
  if (len > out.length) return false;
  for (let i = 0; i < len; i++) if (t[first + i] !== out[out.length - len + i]) return false;
  return true;
}

function rowOperand(t: ConcreteShape, out: ConcreteShape, n: number): RowOperand | null {
  const size = sizeOf(t);
  if (size === n) return 'full';
  if (size === 1) return 'scalar';
  if (isSuffix(t, out)) return 'tile';
  const last = out[out.length - 1] ?? 1;
  const column = t[t.length - 1] === 1 && size * last === n && isSuffix(t.slice(0, -1), out.slice(0, -1));
  return column ? 'column' : null;
}

/**
 * The rows x cols layout of an elementwise op of operands shaped `a` and `b` with output `out` (their
 * broadcast), or null for a broadcast it does not cover (Note [row layouts]).
 */
export function rowLayout(a: ConcreteShape, b: ConcreteShape, out: ConcreteShape): RowLayout | null {
  const n = sizeOf(out);
  if (n === 0) return { rows: 0, cols: 0, a: 'full', b: 'full' };
  const [ka, kb] = [rowOperand(a, out, n), rowOperand(b, out, n)];
  if (ka === null || kb === null) return null;
  const last = out[out.length - 1] ?? 1;
  let cols = n;
  if (ka === 'column' || kb === 'column') {
    // A tile alongside a column must be one row long.
    if ((ka === 'tile' && sizeOf(a) !== last) || (kb === 'tile' && sizeOf(b) !== last)) return null;
    cols = last;
  } else if (ka === 'tile' && kb === 'tile') {
    if (sizeOf(a) !== sizeOf(b)) return null;
    cols = sizeOf(a);
  } else if (ka === 'tile') cols = sizeOf(a);
  else if (kb === 'tile') cols = sizeOf(b);
  return { rows: n / cols, cols, a: ka, b: kb };
}
