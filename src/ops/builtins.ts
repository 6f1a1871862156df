// The one explicit list of built-in ops. Importing this module registers them all.
import { abs } from './abs.ts';
import { add } from './add.ts';
import { argmax } from './argmax.ts';
import { avgPool2d, avgPool2dGrad } from './avg-pool2d.ts';
import { broadcastTo } from './broadcast-to.ts';
import { equal, greater, greaterEqual } from './compare.ts';
import { concat } from './concat.ts';
import { conv2d, conv2dInputGrad, conv2dWeightGrad } from './conv2d.ts';
import { dimSize } from './dim-size.ts';
import { div } from './div.ts';
import { dropout } from './dropout.ts';
import { erf } from './erf.ts';
import { exp } from './exp.ts';
import { gather } from './gather.ts';
import { gelu } from './gelu.ts';
import { geluGrad } from './gelu-grad.ts';
import { leakyRelu } from './leaky-relu.ts';
import { log } from './log.ts';
import { logSoftmax } from './log-softmax.ts';
import { matmul } from './matmul.ts';
import { max } from './max.ts';
import { maxPool2d, maxPool2dGrad, maxPool2dSelect } from './max-pool2d.ts';
import { maximum } from './maximum.ts';
import { mean } from './mean.ts';
import { minimum } from './minimum.ts';
import { mse } from './mse.ts';
import { mul } from './mul.ts';
import { neg } from './neg.ts';
import { oneHot } from './one-hot.ts';
import type { Attrs, OpDef } from './op.ts';
import { pad } from './pad.ts';
import { pow } from './pow.ts';
import { defineOp } from './registry.ts';
import { relu } from './relu.ts';
import { reshape } from './reshape.ts';
import { scatterAdd } from './scatter-add.ts';
import { sigmoid } from './sigmoid.ts';
import { sign } from './sign.ts';
import { slice } from './slice.ts';
import { softmax } from './softmax.ts';
import { softmaxCrossEntropy, softmaxCrossEntropyGrad } from './softmax-cross-entropy.ts';
import { sqrt } from './sqrt.ts';
import { square } from './square.ts';
import { stepKey } from './step-key.ts';
import { stopGradient } from './stop-gradient.ts';
import { sub } from './sub.ts';
import { sum } from './sum.ts';
import { tanh } from './tanh.ts';
import { transpose } from './transpose.ts';
import { where } from './where.ts';
import '../tensor/kernels-ts.ts';
import '../tensor/default-kernels.ts';

export const builtinOps: readonly OpDef<Attrs>[] = [
  add,
  sub,
  mul,
  div,
  maximum,
  minimum,
  greater,
  greaterEqual,
  equal,
  neg,
  exp,
  log,
  sqrt,
  square,
  pow,
  abs,
  sign,
  tanh,
  sigmoid,
  relu,
  leakyRelu,
  gelu,
  geluGrad,
  erf,
  matmul,
  transpose,
  reshape,
  broadcastTo,
  sum,
  mean,
  max,
  softmax,
  logSoftmax,
  softmaxCrossEntropy,
  softmaxCrossEntropyGrad,
  mse,
  concat,
  slice,
  pad,
  gather,
  scatterAdd,
  oneHot,
  stopGradient,
  dimSize,
  where,
  argmax,
  conv2d,
  conv2dInputGrad,
  conv2dWeightGrad,
  maxPool2d,
  maxPool2dGrad,
  maxPool2dSelect,
  avgPool2d,
  avgPool2dGrad,
  stepKey,
  dropout,
] as unknown as readonly OpDef<Attrs>[];

for (const op of builtinOps) defineOp(op);
