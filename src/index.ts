// The public API of backflow: the only barrel file.

export type { Failpoint, FailpointAction } from './actor/failpoint.ts';
export type { HostStats } from './actor/host-types.ts';
export type { HostAction } from './actor/task-queue.ts';
export {
  evaluate,
  TRAINING_RUN,
  type ValueAndGradFn,
  type ValueAndGradOptions,
  type ValueAndGradResult,
  valueAndGrad,
} from './autodiff/engine.ts';
export type { TensorMap } from './autodiff/forward.ts';
export { type GradGraphOptions, gradGraph, hvp } from './autodiff/grad-graph.ts';
export {
  type GradcheckFailure,
  type GradcheckOptions,
  type GradcheckReport,
  gradcheck,
  gradcheckFn,
} from './autodiff/gradcheck.ts';
export {
  type BatchShard,
  type ReferenceStepResult,
  referenceStep,
  type SplitOptions,
  splitBatch,
} from './autodiff/microbatch.ts';
export {
  type Batch,
  type Batches,
  type BatchOptions,
  type DataCursor,
  Dataset,
  type Example,
} from './data/dataset.ts';
export { loadMnist, type MnistOptions, type MnistSplit } from './data/mnist.ts';
export { blobs, type LabeledSet, spirals } from './data/synthetic.ts';
export {
  type CharVocabulary,
  charVocabulary,
  type TextWindowOptions,
  taggedToText,
  textWindows,
} from './data/text.ts';
export * from './errors.ts';
export { GraphBuilder } from './graph/builder.ts';
export { castGraph } from './graph/cast.ts';
export { checkGraph } from './graph/check.ts';
export { Graph, label, type Node, type NodeRef } from './graph/graph.ts';
/** Layers as functions of a `GraphBuilder` (`dense`, `layerNorm`, `mlp`, `embedding`), built from the registered ops. */
export * as nn from './graph/nn.ts';
export { initParams } from './graph/params.ts';
export { type Printable, type PrintOptions, printGraph, printNode } from './graph/print.ts';
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
export {
  type Conv2dOptions,
  type DropoutOptions,
  type MatmulOptions,
  Ops,
  type Pool2dOptions,
} from './ops/ops.ts';
export { defineOp, getOp, hasOp, listOps } from './ops/registry.ts';
export { type AdamOptions, adam, adamw } from './optim/adam.ts';
export { type ClipResult, clipGlobalNorm, globalNorm } from './optim/clip.ts';
export { type Optimizer, type OptimizerCheckpoint, OptimizerRun } from './optim/optimizer.ts';
export { constantLr, cosineLr, type LrSchedule, linearWarmup, stepLr } from './optim/schedule.ts';
export { type SgdOptions, sgd } from './optim/sgd.ts';
export { makeOptimizer, type OptimizerSpec } from './optim/spec.ts';
export { estimateMemory, type MemoryOptions, type WorkerMemory } from './partition/memory.ts';
export { PLACEMENT_STRATEGIES, type PlacementStrategy } from './partition/placement.ts';
export {
  type CompileOptions,
  type CrossEdge,
  compile,
  type ParamPlacement,
  type Plan,
  type PlanOptions,
} from './partition/plan.ts';
export { printPlan } from './partition/print.ts';
export type { NatsEndpoint } from './protocol/nats-connect.ts';
export type { WireTlsFiles } from './protocol/node-wires.ts';
export type { InferOptions } from './runtime/infer.ts';
export {
  type NatsServer,
  natsServerInstalled,
  type ServerOptions,
  startNatsServer,
} from './runtime/nats-server.ts';
export { type NodeOptions, type NodeProcess, startNode } from './runtime/node-process.ts';
export { hostActions, type ScheduleSpec } from './runtime/pipeline.ts';
export type { NatsClusterOptions } from './runtime/rendezvous.ts';
export { createRuntime, Runtime, type RuntimeOptions, type StepResult } from './runtime/runtime.ts';
export type { StepOptions } from './runtime/step.ts';
export type { Action, OverlappedAction, Schedule, Slot } from './schedule/action.ts';
export { formatAction, formatSlot, parseAction, parseSlot } from './schedule/action.ts';
export {
  type ActionCosts,
  type BubbleStats,
  bubbleStats,
  closedFormIdleFraction,
} from './schedule/bubble.ts';
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
  scheduleDualPipeV,
  scheduleGPipe,
  scheduleInterleaved1F1B,
  scheduleInterleavedZB,
  scheduleLoopedBFS,
  schedulePlacement,
  scheduleZBH1,
  scheduleZBV,
} from './schedule/generators.ts';
export { formatGrid, type GridMark, type GridOptions } from './schedule/grid.ts';
export {
  type PlacedSchedule,
  resolveStagePlacement,
  type ScheduleShape,
  type ShapeOptions,
  STAGE_PLACEMENT_NAMES,
  type StagePlacement,
  type StagePlacementName,
  stagesOfWorker,
  stagesPerWorker,
  workerOfStage,
} from './schedule/placement.ts';
export { validateSchedule } from './schedule/validate.ts';
export { type CostModel, flopCosts, type LinkCost, stageCosts, traceCosts } from './sim/cost.ts';
export { type PipelineSimOptions, simulatePipeline, stageChain } from './sim/pipeline.ts';
export { type ReplayOptions, replayTraces } from './sim/replay.ts';
export {
  type Candidate,
  formatSearch,
  type ModelCosts,
  type RankedCandidate,
  type SearchOptions,
  type SearchResult,
  type SkippedCandidate,
  searchSchedule,
} from './sim/search.ts';
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
export type { PoolOptions } from './tensor/pool.ts';
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
export { type StepCosts, stepCosts } from './trace/calibrate.ts';
export { toChromeTrace } from './trace/chrome.ts';
export { timelineSvg } from './trace/svg.ts';
export type { Flow, Span, StepMark, StepMarkKind, Trace } from './trace/trace.ts';
export { type Counter, coalesce, type SpanPhase, traceStats } from './trace/trace.ts';
export {
  type CurvePoint,
  type CurveSeries,
  lossCurveSvg,
  type SvgChartOptions,
  type TerminalChartOptions,
  terminalChart,
} from './train/chart.ts';
export { type LoadOptions, loadCheckpoint, type SaveOptions, saveCheckpoint } from './train/checkpoint.ts';
export type { Checkpoint } from './train/checkpoint-format.ts';
export { type EvalResult, evaluateClassifier } from './train/evaluate.ts';
export {
  type LanguageModelOptions,
  type SampleOptions,
  sampleTokens,
  transformerLanguageModel,
} from './train/language-model.ts';
export { loadModel, MODEL_FORMAT_VERSION, type Model, saveModel } from './train/model-file.ts';
export {
  type CnnClassifierOptions,
  cnnClassifier,
  mlpClassifier,
  transformerClassifier,
} from './train/models.ts';
export { type PredictOptions, predict } from './train/predict.ts';
export type { ProgressStream } from './train/progress.ts';
export type { RestartEvent, RestartOptions } from './train/restarts.ts';
export { trainingSummary, workerBytesLines } from './train/summary.ts';
export {
  type EpochRecord,
  type FitCallbacks,
  type FitOptions,
  type History,
  type StepRecord,
  Trainer,
  type TrainerOptions,
} from './train/trainer.ts';
export { formatBytes } from './util/bytes.ts';
