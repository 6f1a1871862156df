import type { BackflowError, ErrorContext } from '../errors.ts';
import { type Printable, printGraph } from './print.ts';

// An error about one node of a graph quotes the printed lines around that node.
export type ErrorClass = new (
  message: string,
  context: ErrorContext,
  options?: { cause?: unknown },
) => BackflowError;

/** An error about node `node`, quoting the printed lines around it. */
export function nodeError(
  Class: ErrorClass,
  view: Printable,
  node: { id: number; name?: unknown; op?: unknown },
  message: string,
  context: ErrorContext = {},
  cause?: unknown,
  radius = 2,
): BackflowError {
  const where = typeof node.name === 'string' ? node.name : `%${node.id}`;
  const lines = printGraph(view, { around: node.id, radius })
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
  return new Class(
    `${message}\n${lines}`,
    {
      node: where,
      id: node.id,
      ...(typeof node.op === 'string' ? { op: node.op } : {}),
      ...context,
    },
    cause === undefined ? undefined : { cause },
  );
}
