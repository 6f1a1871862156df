// The textbook example of back-propagation, run on backflow's graphs.
//
//   npx tsx examples/seed-chain.ts [--depth N]
//
// Part 1: x = f(w), y = f(x), z = f(y) with f = tanh. Back-propagation gives dz/dw, the chain rule
// written out gives f'(y) f'(x) f'(w): the same number, bit for bit (the same products in the same
// order). The graph G and the gradient graph G+B are printed.
//
// Part 2: a chain where every level uses the one before twice, x_{k+1} = x_k * sigmoid(x_k), so
// there are 2^depth paths from w to the output. Expanding the chain rule naively (a sum over
// consumers, recursively, nothing remembered) costs exponentially many operations; back-propagation
// differentiates each node once, linearly. Both are run and give the same gradient.
import { parseArgs } from 'node:util';
import {
  bitwiseEqual,
  evaluate,
  type Graph,
  GraphBuilder,
  gradGraph,
  printGraph,
  scalar,
  tensor,
  valueAndGrad,
} from 'backflow-runtime';

const { values: args } = parseArgs({ options: { depth: { type: 'string', default: '40' } } });
const maxDepth = Number(args.depth);
/** Depths up to this one are also expanded naively for real (2^20 paths is about a million terms). */
const NAIVE_LIMIT = 20;

// Part 1 ---------------------------------------------------------------------------------------

console.log('Part 1: z = f(f(f(w))) with f = tanh\n');
const b = new GraphBuilder();
const w = b.param('w', [], { dtype: 'float64' });
const x = b.name(b.tanh(w), 'x');
const y = b.name(b.tanh(x), 'y');
b.output('z', b.name(b.tanh(y), 'z'));
const chain = b.build();
console.log(printGraph(chain));

const w0 = scalar(0.8, 'float64');
const { value, grads } = valueAndGrad(chain, { loss: 'z' })({}, { w: w0 });
const backprop = grads['w']!;
// The chain rule by hand: f'(u) = 1 - tanh(u)^2, and tanh(w) = x, tanh(x) = y, tanh(y) = z.
const xv = Math.tanh(w0.item());
const yv = Math.tanh(xv);
const zv = Math.tanh(yv);
const fPrime = (fu: number) => 1 - fu * fu;
const chainRule = fPrime(zv) * fPrime(yv) * fPrime(xv);
console.log(`\nz = ${value.item()}`);
console.log(`dz/dw by back-propagation:            ${backprop.item()}`);
console.log(`dz/dw = f'(y) f'(x) f'(w) by hand:    ${chainRule}`);
const same = bitwiseEqual(backprop, tensor([chainRule], { shape: [], dtype: 'float64' }));
console.log(`equal bit for bit: ${same}`);
if (!same) throw new Error('seed-chain: back-propagation and the chain rule disagree');

console.log('\nThe same derivative as a graph (symbol-to-symbol): G+B, differentiable again\n');
console.log(printGraph(gradGraph(chain, { loss: 'z' })));

// Part 2 ---------------------------------------------------------------------------------------

/** x_0 = w, x_{k+1} = x_k * sigmoid(x_k), output x_depth. */
function diamondChain(depth: number): Graph {
  const b = new GraphBuilder();
  let x = b.param('w', [], { dtype: 'float64' });
  for (let k = 0; k < depth; k++) x = b.mul(x, b.sigmoid(x));
  b.output('out', x);
  return b.build();
}

/** The nodes on a path from the node named `from` to node `to`: those a gradient flows through. */
function onPath(graph: Graph, from: string, to: number): number[] {
  const reached = graph.nodes.map((n) => n.name === from);
  for (const n of graph.nodes) if (n.inputs.some((i) => reached[i])) reached[n.id] = true;
  const feeds = graph.nodes.map((n) => n.id === to);
  for (let id = graph.nodes.length - 1; id >= 0; id--)
    if (feeds[id]) for (const i of graph.nodes[id]!.inputs) feeds[i] = true;
  return graph.nodes.filter((n) => reached[n.id] && feeds[n.id]).map((n) => n.id);
}

/** How a node's output changes with its input `slot`, from the forward values (the ops of this file). */
function localDerivative(graph: Graph, values: readonly number[], id: number, slot: number): number {
  const node = graph.nodes[id]!;
  const v = values[id]!;
  switch (node.op) {
    case 'sigmoid':
      return v * (1 - v);
    case 'mul':
      return values[node.inputs[1 - slot]!]!;
    default:
      throw new Error(`seed-chain: no local derivative for ${node.op}`);
  }
}

/**
 * The chain rule expanded naively: d out / d node = sum over the node's consumers c of
 * (d out / d c) * (d c / d node), recursing into every consumer again each time it is reached.
 * Counts the arithmetic it does: one operation per local derivative, product and addition.
 */
function naiveGradient(graph: Graph, values: readonly number[], out: number) {
  const consumers: [number, number][][] = graph.nodes.map(() => []);
  for (const node of graph.nodes) {
    node.inputs.forEach((input, slot) => {
      consumers[input]!.push([node.id, slot]);
    });
  }
  let operations = 0;
  const grad = (id: number): number => {
    if (id === out) return 1;
    let sum = 0;
    consumers[id]!.forEach(([c, slot], k) => {
      const term = grad(c) * localDerivative(graph, values, c, slot);
      operations += 2;
      sum = k === 0 ? term : sum + term;
      if (k > 0) operations++;
    });
    return sum;
  };
  return { gradient: grad(graph.nodes.find((n) => n.name === 'w')!.id), operations };
}

// Per level: d x_k takes two terms (2 local derivatives, 2 products, 1 addition) and d s_k one
// (1 local derivative, 1 product), and each term recurses into d x_{k+1}: N(d) = 2 N(d - 1) + 7.
const naiveFormula = (depth: number) => 7 * (2 ** depth - 1);

console.log('\nPart 2: x_{k+1} = x_k * sigmoid(x_k): every level uses the one before twice\n');
const header = [
  'depth',
  'paths',
  'naive ops',
  'backprop VJPs',
  'ops in B',
  'dout/dw (backprop)',
  'naive - backprop',
];
const widths = [5, 10, 20, 14, 9, 22, 17];
console.log(header.map((h, i) => h.padStart(widths[i]!)).join(' '));
const w1 = scalar(1.5, 'float64');
for (let depth = 1; depth <= maxDepth; depth = depth < 10 ? depth + 1 : depth + 5) {
  const graph = diamondChain(depth);
  const out = graph.outputs['out']!;
  // One VJP per node on a path from w to the output that is not a leaf: linear in the depth.
  const vjps = onPath(graph, 'w', out).filter((id) => graph.nodes[id]!.inputs.length > 0).length;
  const opsInB = gradGraph(graph, { loss: 'out' }).size - graph.size;
  const backprop = valueAndGrad(graph, { loss: 'out' })({}, { w: w1 }).grads['w']!.item();
  let naiveOps: string;
  let diff = '(not expanded)';
  if (depth <= NAIVE_LIMIT) {
    const all = evaluate(
      graph,
      {},
      { w: w1 },
      graph.nodes.map((n) => n.id),
    );
    const values = graph.nodes.map((n) => all[n.name ?? `%${n.id}`]!.item());
    const naive = naiveGradient(graph, values, out);
    if (naive.operations !== naiveFormula(depth))
      throw new Error(
        `seed-chain: counted ${naive.operations} naive operations, formula ${naiveFormula(depth)}`,
      );
    const rel = Math.abs(naive.gradient - backprop) / Math.abs(backprop);
    if (!(rel < 1e-12))
      throw new Error(`seed-chain: naive ${naive.gradient} vs backprop ${backprop} at depth ${depth}`);
    naiveOps = String(naive.operations);
    diff = (naive.gradient - backprop).toExponential(1);
  } else naiveOps = `${naiveFormula(depth).toExponential(2)} (formula)`;
  const paths = 2 ** depth;
  console.log(
    [
      String(depth),
      paths < 1e6 ? String(paths) : paths.toExponential(2),
      naiveOps,
      String(vjps),
      String(opsInB),
      backprop.toPrecision(15),
      diff,
    ]
      .map((cell, i) => cell.padStart(widths[i]!))
      .join(' '),
  );
}
console.log(
  '\nThe naive count doubles with every level; back-propagation runs one VJP per node and one addition per\n' +
    'extra consumer, so its count (and the size of the gradient graph B) grows linearly.',
);
