import { binaryOp } from './rules.ts';

// Comparisons give 1 or 0 in the operands' dtype. No gradient flows through them (they are flat
// almost everywhere); VJPs use them as masks.
const none = { inputs: 'none', output: false } as const;
export const greater = binaryOp({ name: 'greater', kind: 'greater', saves: none });
export const greaterEqual = binaryOp({ name: 'greaterEqual', kind: 'greaterEqual', saves: none });
export const equal = binaryOp({ name: 'equal', kind: 'equal', saves: none });
