// Fuzz steps for the shapes a feature switch asks for rather than for an op: parameter-only and
// constant-only subgraphs, fan-out, parameters the loss does not reach, and the fixture user ops.
import { binary, newWidth, type Step, unary, widthOf } from './step.ts';

export const FEATURE_STEPS: readonly Step[] = [
  {
    op: 'weightDecay',
    needs: ['paramConstOnly'],
    build: (c) => c.term(c.b.mul(c.b.sum(c.b.square(c.param([widthOf(c.pick()), newWidth(c)]))), 0.01)),
  },
  {
    op: 'constOnly',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.exp(c.constant([widthOf(v)]))));
    },
  },
  {
    op: 'paramChain',
    needs: ['paramConstOnly'],
    build: (c) => {
      const v = c.pick();
      const k = newWidth(c);
      const w = c.b.tanh(c.b.matmul(c.param([widthOf(v), k]), c.param([k, newWidth(c)])));
      c.push(c.b.matmul(v, w));
    },
  },
  {
    op: 'fanOut',
    needs: ['paramFanOut'],
    build: (c) => {
      const v = c.pick();
      const w = c.param([widthOf(v), widthOf(v)]);
      c.push(c.b.add(c.b.matmul(v, w), c.b.matmul(c.b.tanh(c.b.matmul(v, w)), w)));
    },
  },
  { op: 'unusedParam', needs: ['disconnectedParam'], build: (c) => void c.param([newWidth(c), newWidth(c)]) },
  {
    op: 'deadBranch',
    needs: ['disconnectedParam'],
    build: (c) => {
      const v = c.pick();
      c.dead(c.b.tanh(c.b.matmul(v, c.param([widthOf(v), newWidth(c)]))));
    },
  },
  {
    op: 'gradlessParam',
    needs: ['disconnectedParam', 'nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.stopGradient(c.b.matmul(v, c.param([widthOf(v), widthOf(v)])))));
    },
  },
  { ...unary('fuzzCube'), needs: ['userOps'] },
  { ...unary('fuzzSoftsign'), needs: ['userOps'] },
  {
    op: 'fuzzStep',
    needs: ['userOps', 'nonDiff'],
    build: (c) => {
      const v = c.pick();
      c.push(c.b.mul(v, c.b.apply('fuzzStep', [c.pickWidth(widthOf(v))])));
    },
  },
  binary('fuzzScaledMul', ['userOps'], { alpha: 0.5 }),
];
