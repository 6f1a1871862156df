import { unaryOp } from './rules.ts';

// Flat almost everywhere: no gradient flows.
export const sign = unaryOp({ name: 'sign', kind: 'sign', saves: { inputs: 'none', output: false } });
