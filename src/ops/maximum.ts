import type { OpDef } from './op.ts';
import { binaryOp } from './rules.ts';

// Where the operands tie, the gradient is split evenly between them (as PyTorch does). The winner
// of `maximum` is the greater operand, of `minimum` the smaller: `first` says which input wins on
// greater(a, b).
function extremum(name: 'maximum' | 'minimum', first: 0 | 1): OpDef {
  return binaryOp({
    name,
    kind: name,
    saves: { inputs: 'all', output: false },
    vjp: (o, { g, input, needs }) => {
      const a = input(0);
      const b = input(1);
      const half = o.mul(o.equal(a, b), 0.5);
      const wins = [o.greater(a, b), o.greater(b, a)];
      return [
        needs[0] ? o.mul(g, o.add(wins[first]!, half)) : null,
        needs[1] ? o.mul(g, o.add(wins[1 - first]!, half)) : null,
      ];
    },
  });
}

export const maximum = extremum('maximum', 0);
export const minimum = extremum('minimum', 1);
