// The public API of backflow: the only barrel file.

export {
  evaluate,
  TRAINING_RUN,
  type ValueAndGradOptions,
  type ValueAndGradResult,
  valueAndGrad,
} from './autodiff/engine.ts';
export { type GradGraphOptions, gradGraph, hvp } from './autodiff/grad-graph.ts';
export { type GradcheckOptions, type GradcheckReport, gradcheck, gradcheckFn } from './autodiff/gradcheck.ts';
export { referenceStep, splitBatch } from './autodiff/microbatch.ts';
export { Dataset } from './data/dataset.ts';
export { loadMnist } from './data/mnist.ts';
export { blobs, spirals } from './data/synthetic.ts';
export * from './errors.ts';
export { GraphBuilder } from './graph/builder.ts';
export { castGraph } from './graph/cast.ts';
export { checkGraph } from './graph/check.ts';
export { Graph, label, type Node, type NodeRef } from './graph/graph.ts';
export * as nn from './graph/nn.ts';
export { initParams } from './graph/params.ts';
export { printGraph, printNode } from './graph/print.ts';
export { deserializeGraph, serializeGraph } from './graph/serialize.ts';
export { summary } from './graph/summary.ts';
export { EagerOps, eager } from './ops/eager.ts';
export {
  type Attrs,
  EVAL_RUN,
  type OpDef,
  type RunContext,
  type Saves,
  type TypeInfo,
  type Vjp,
  type VjpContext,
} from './ops/op.ts';
export { type DropoutOptions, type MatmulOptions, Ops } from './ops/ops.ts';
export { defineOp, getOp, hasOp, listOps } from './ops/registry.ts';
export { adam, adamw } from './optim/adam.ts';
export { clipGlobalNorm, globalNorm } from './optim/clip.ts';
export { type Optimizer, OptimizerRun } from './optim/optimizer.ts';
export { constantLr, cosineLr, type LrSchedule, linearWarmup, stepLr } from './optim/schedule.ts';
export { sgd } from './optim/sgd.ts';
export { makeOptimizer, type OptimizerSpec } from './optim/spec.ts';
export { PLACEMENT_STRATEGIES, type PlacementStrategy } from './partition/placement.ts';
export { type CompileOptions, compile, type Plan } from './partition/plan.ts';
export { printPlan } from './partition/print.ts';
export type { NatsEndpoint } from './protocol/nats-connect.ts';
export type { InferOptions } from './runtime/infer.ts';
export { type NatsServer, natsServerInstalled, startNatsServer } from './runtime/nats-server.ts';
export { type NodeOptions, type NodeProcess, startNode } from './runtime/node-process.ts';
export type { NatsClusterOptions } from './runtime/rendezvous.ts';
export {
  createRuntime,
  Runtime,
  type RuntimeOptions,
  type StepOptions,
  type StepResult,
} from './runtime/runtime.ts';

export type { Action, Schedule, Slot } from './schedule/action.ts';
export { formatAction, parseAction } from './schedule/action.ts';
export { bubbleStats } from './schedule/bubble.ts';
export { insertCommunication } from './schedule/communication.ts';
export {
  checkPipelineConfig,
  type PipelineConfig,
  SCHEDULE_KINDS,
  type ScheduleKind,
} from './schedule/config.ts';
export {
  placedScheduleFromCsv,
  placedScheduleToCsv,
  scheduleFromCsv,
  scheduleToCsv,
} from './schedule/csv.ts';
export {
  generatePlacedSchedule,
  generateSchedule,
  schedule1F1B,
  scheduleGPipe,
  scheduleInterleaved1F1B,
  schedulePlacement,
  scheduleZBH1,
} from './schedule/generators.ts';
export { formatGrid } from './schedule/grid.ts';
export {
  type PlacedSchedule,
  resolveStagePlacement,
  STAGE_PLACEMENT_NAMES,
  type StagePlacement,
  stagesOfWorker,
  stagesPerWorker,
  workerOfStage,
} from './schedule/placement.ts';
export { validateSchedule } from './schedule/validate.ts';
export { type CostModel, flopCosts, type LinkCost, stageCosts, traceCosts } from './sim/cost.ts';
export { simulatePipeline, stageChain } from './sim/pipeline.ts';
export { type SimResult, type SimulateOptions, simulate } from './sim/simulate.ts';
export {
  TRANSPORT_DEFAULTS,
  TRANSPORT_KINDS,
  type TransportKind,
  type TransportParams,
  type WireStats,
} from './sim/transport.ts';
export { type Initializer, initialize } from './tensor/init.ts';
export { fallbackKernels, type Kernels, kernels, useKernels } from './tensor/kernels.ts';
export { Rng, type RngState } from './tensor/rng.ts';
export { broadcastShapes, type ConcreteShape, type Dim, type Shape } from './tensor/shape.ts';
export {
  bitwiseEqual,
  cast,
  type DType,
  full,
  ones,
  type Storage,
  scalar,
  Tensor,
  tensor,
  zeros,
} from './tensor/tensor.ts';
export { toChromeTrace } from './trace/chrome.ts';
export { timelineSvg } from './trace/svg.ts';
export type { Flow, Span, Trace } from './trace/trace.ts';
export { coalesce, traceStats } from './trace/trace.ts';
export { lossCurveSvg, terminalChart } from './train/chart.ts';
export { loadCheckpoint, saveCheckpoint } from './train/checkpoint.ts';
export { loadModel, MODEL_FORMAT_VERSION, type Model, saveModel } from './train/model-file.ts';
export { mlpClassifier, transformerClassifier } from './train/models.ts';
export { type PredictOptions, predict } from './train/predict.ts';
export type { RestartEvent, RestartOptions } from './train/restarts.ts';
export { type FitOptions, type History, Trainer, type TrainerOptions } from './train/trainer.ts';
