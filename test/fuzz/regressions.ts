// Shrunk failing cases the fuzzer found, replayed by every run of the fuzz test. Each stores its
// case and the graph the generator built from it: if the generator changes so that the case builds
// another graph, the test says so, and the entry must be shrunk again (a failure report prints the
// command that replays its case). Titles start with the feature that fails.
import { type FuzzCase, runWith } from './case.ts';

export interface Regression {
  title: string;
  case: FuzzCase;
  /** printGraph of the case's graph. */
  graph: string;
}

export const REGRESSIONS: Regression[] = [
  {
    title: 'paramConstOnly: transpose(W) reads only a parameter, never runs (step timeout)',
    case: {
      seed: 3,
      size: 6,
      skip: [0, 1, 2, 3, 4],
      ops: 54,
      width: 1,
      features: ['paramFanOut', 'paramConstOnly'],
      run: runWith({}),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = param "p1" normal{std: 0.5} : f32[2,1]
%5 = transpose %4 {perm: [1,0]} : f32[1,2]
%6 = matmul %3 %5 : f32[B,2]
%7 = square %6 : f32[B,2]
%8 = mean %7 {axes: [0,1]} : f32[]
outputs: loss=%8`,
  },
  {
    title: 'disconnectedParam: a parameter nothing reads, with Adam on the workers (step timeout)',
    case: {
      seed: 10,
      size: 1,
      skip: [],
      ops: 54,
      width: 1,
      features: ['nonDiff', 'userOps', 'disconnectedParam', 'optimizer'],
      run: runWith({ optimizer: 'adam' }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = param "p1" normal{std: 0.5} : f32[2,1]
%5 = sum %3 {axes: [0,1]} : f32[]
outputs: loss=%5`,
  },
  {
    title: 'wrtInputs: x in wrt (step timeout: the input actor waits for 0/0 inputs)',
    case: { seed: 1, size: 1, skip: [0], ops: 54, width: 1, features: ['wrtInputs'], run: runWith({}) },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = sum %3 {axes: [0,1]} : f32[]
outputs: loss=%4`,
  },
  {
    title: 'wrtInputs: referenceStep adds the gradients of x over uneven shards (ShapeError)',
    case: {
      seed: 9,
      size: 0,
      skip: [],
      ops: 54,
      width: 1,
      features: ['wrtInputs'],
      run: runWith({ replicas: 2, batch: 5 }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = mean %3 {axes: [0,1]} : f32[]
outputs: loss=%4`,
  },
  {
    title: 'wrtInputs: x in wrt with 2 replicas (a gradient for %0 which has no actor here)',
    case: {
      seed: 12,
      size: 9,
      skip: [0, 1, 2, 3, 4, 5, 8],
      ops: 54,
      width: 1,
      features: ['wrtInputs'],
      run: runWith({ workers: 2, replicas: 2, batch: 2 }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = tanh %3 : f32[B,1]
%5 = exp %4 : f32[B,1]
%6 = const [0.5747415] : f32[1]
%7 = mul %5 %6 : f32[B,1]
%8 = abs %7 : f32[B,1]
%9 = erf %3 : f32[B,1]
%10 = sum %8 {axes: [0,1]} : f32[]
%11 = sum %9 {axes: [0,1]} : f32[]
%12 = add %10 %11 : f32[]
outputs: loss=%12`,
  },
  {
    title: 'wrtInputs: x in wrt read only through a comparison (zeros of the symbolic shape [B,2])',
    case: {
      seed: 68,
      size: 5,
      skip: [1, 2],
      ops: 54,
      width: 2,
      features: ['nonDiff', 'secondInput', 'userOps', 'wrtInputs'],
      run: runWith({}),
    },
    graph: `
%0 = input "x" : f32[B,2]
%1 = param "p0" normal{std: 0.5} : f32[2,2]
%2 = matmul %0 %1 : f32[B,2]
%3 = tanh %2 : f32[B,2]
%4 = input "x2" : f32[B,2]
%5 = input "c" : f32[2]
%6 = input "y" : f32[B]
%7 = greaterEqual %3 %3 : f32[B,2]
%8 = mul %4 %7 : f32[B,2]
%9 = tanh %4 : f32[B,2]
%10 = exp %9 : f32[B,2]
%11 = const [1.4882023,-0.79716575] : f32[2]
%12 = mul %10 %11 : f32[B,2]
%13 = leakyRelu %12 {alpha: 0.01} : f32[B,2]
%14 = tanh %4 : f32[B,2]
%15 = exp %14 : f32[B,2]
%16 = const [-0.37003314,1.0906367] : f32[2]
%17 = mul %15 %16 : f32[B,2]
%18 = abs %17 : f32[B,2]
%19 = mean %8 {axes: [0,1]} : f32[]
%20 = mean %13 {axes: [0,1]} : f32[]
%21 = square %18 : f32[B,2]
%22 = mean %21 {axes: [0,1]} : f32[]
%23 = add %19 %20 : f32[]
%24 = add %23 %22 : f32[]
%25 = matmul %13 %1 : f32[B,2]
%26 = mean %25 {axes: [0,1]} : f32[]
%27 = add %24 %26 : f32[]
outputs: loss=%27`,
  },
  {
    title: 'userOps: a user op on threads (unknown op on the workers)',
    case: {
      seed: 2,
      size: 1,
      skip: [],
      ops: 54,
      width: 1,
      features: ['userOps'],
      run: runWith({ mode: 'threads', placement: 'per-node' }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = fuzzCube %3 : f32[B,1]
%5 = sum %4 {axes: [0,1]} : f32[]
outputs: loss=%5`,
  },
  {
    title: 'backStages: stages 0, 1, then 0 again under 1F1B (a step timeout; now refused)',
    case: {
      seed: 1,
      size: 1,
      skip: [],
      ops: 54,
      width: 1,
      features: ['userOps', 'schedules', 'backStages'],
      run: runWith({ workers: 2, microbatches: 2, placement: 'manual', batch: 2, schedule: '1f1b' }),
    },
    graph: `
%0 = input "x" : f32[B,1] @stage 0
%1 = param "p0" normal{std: 0.5} : f32[1,1] @stage 0
%2 = matmul %0 %1 : f32[B,1] @stage 0
%3 = tanh %2 : f32[B,1] @stage 0
%4 = softmax %3 {axis: 1} : f32[B,1] @stage 1
%5 = sum %4 {axes: [0,1]} : f32[] @stage 0
outputs: loss=%5`,
  },
  {
    title: 'frozenParam: a parameter left out of wrt, with SGD on the workers (global norm NaN)',
    case: {
      seed: 4,
      size: 9,
      skip: [0, 1, 2, 3, 4, 6, 7, 8],
      ops: 54,
      width: 1,
      features: ['frozenParam', 'optimizer'],
      run: runWith({ optimizer: 'sgd' }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = param "p1" normal{std: 0.5} : f32[1,2]
%5 = matmul %3 %4 : f32[B,2]
%6 = pad %3 {after: [0,0], before: [0,1]} : f32[B,2]
%7 = softmax %6 {axis: 1} : f32[B,2]
%8 = softmaxCrossEntropy %5 %7 : f32[]
outputs: loss=%8`,
  },
  {
    title:
      'partialStages: an unannotated add follows its last input to an earlier stage, under interleaved 1F1B (step timeout)',
    case: {
      seed: 206,
      size: 4,
      skip: [0],
      ops: 54,
      width: 1,
      features: ['schedules', 'partialStages'],
      run: runWith({ placement: 'manual', schedule: 'interleaved-1f1b', chunks: 2 }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = tanh %3 : f32[B,1] @stage 0
%5 = exp %4 : f32[B,1] @stage 0
%6 = sqrt %5 : f32[B,1] @stage 0
%7 = minimum %6 %6 : f32[B,1] @stage 1
%8 = minimum %3 %6 : f32[B,1]
%9 = square %7 : f32[B,1]
%10 = mean %9 {axes: [0,1]} : f32[]
%11 = mean %8 {axes: [0,1]} : f32[]
%12 = add %10 %11 : f32[]
outputs: loss=%12`,
  },
  {
    title: 'scheduleAnyPlacement: 1F1B over per-node placement on 2 workers (step timeout, not refused)',
    case: {
      seed: 103,
      size: 0,
      skip: [],
      ops: 54,
      width: 1,
      features: ['schedules', 'scheduleAnyPlacement'],
      run: runWith({ workers: 2, microbatches: 2, placement: 'per-node', batch: 2, schedule: '1f1b' }),
    },
    graph: `
%0 = input "x" : f32[B,1]
%1 = param "p0" normal{std: 0.5} : f32[1,1]
%2 = matmul %0 %1 : f32[B,1]
%3 = tanh %2 : f32[B,1]
%4 = square %3 : f32[B,1]
%5 = mean %4 {axes: [0,1]} : f32[]
outputs: loss=%5`,
  },
  {
    title:
      "wrtInputs: an input in wrt that the loss (weight decay only) does not read: the reference threw (symbolic 'B' unbound)",
    case: {
      seed: 22930,
      size: 7,
      skip: [0, 2, 3, 4],
      ops: 54,
      width: 1,
      features: [
        'nonDiff',
        'paramFanOut',
        'secondInput',
        'userOps',
        'paramConstOnly',
        'disconnectedParam',
        'wrtInputs',
        'partialStages',
      ],
      run: runWith({ placement: 'manual' }),
    },
    graph: `
%0 = input "x" : f32[B,1] @stage 0
%1 = param "p0" normal{std: 0.5} : f32[1,1] @stage 0
%2 = matmul %0 %1 : f32[B,1] @stage 0
%3 = tanh %2 : f32[B,1] @stage 0
%4 = input "x2" : f32[B,3] @stage 0
%5 = input "c" : f32[1] @stage 0
%6 = input "y" : f32[B] @stage 0
%7 = slice %4 {begin: [0,1], size: [-1,1]} : f32[B,1] @stage 0
%8 = maximum %3 %7 : f32[B,1] @stage 0
%9 = param "p1" normal{std: 0.5} : f32[1,2] @stage 0
%10 = matmul %8 %9 : f32[B,2] @stage 0
%11 = tanh %10 : f32[B,2] @stage 0
%12 = param "p2" normal{std: 0.5} : f32[3,1] @stage 0
%13 = square %12 : f32[3,1] @stage 0
%14 = sum %13 {axes: [0,1]} : f32[] @stage 0
%15 = const 0.01 : f32[] @stage 0
%16 = mul %14 %15 : f32[] @stage 0
outputs: loss=%16, dead0=%11`,
  },
];
