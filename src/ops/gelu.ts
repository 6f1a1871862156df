import { unaryOp } from './rules.ts';

// Note [fused GELU]
// GELU is x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, and its derivative Phi(x) + x phi(x) with
// phi(x) = exp(-x^2 / 2) / sqrt(2 pi). Each is one kernel pass ('gelu' and 'geluGrad' unary kinds)
// computing in float64 exactly what the composite of primitives computed in float64, so float64
// results are the composite's bit for bit; float32 rounds once at the end (Note [float32 erf],
// Note [float32 exp]) instead of after each of five (forward) or eleven (derivative) ops. The
// derivative is an op of its own, geluGrad, so gelu's VJP is two ops, and geluGrad's own VJP,
// phi(x) (2 - x^2), is built from primitives: gradGraph of gradGraph still works.

/** The exact GELU, x Phi(x) (Note [fused GELU]). */
export const gelu = unaryOp({
  name: 'gelu',
  kind: 'gelu',
  saves: { inputs: [0], output: false },
  vjp: (o, { g, input }) => [o.mul(g, o.geluGrad(input(0)))],
  flopsPerElement: 50,
});
