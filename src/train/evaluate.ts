import { evaluate } from '../autodiff/engine.ts';
import type { TensorMap } from '../autodiff/forward.ts';
import type { Dataset } from '../data/dataset.ts';
import { takeRows } from '../data/synthetic.ts';
import { type Graph, label, type NodeRef } from '../graph/graph.ts';

/** What `evaluateClassifier` measured over a dataset. */
export interface EvalResult {
  /** The loss averaged over examples. */
  loss: number;
  /**
   * Fraction of labels the largest logit names (when the graph has a logits output): one per row for
   * labels [N], one per position for labels [N, T] and logits [N, T, classes].
   */
  accuracy: number | null;
  /** Examples evaluated. */
  samples: number;
}

/**
 * Loss and accuracy of a classifier over a dataset, in this thread with the reference engine, in
 * chunks. The loss is averaged over examples (chunks weighted by their size).
 */
export function evaluateClassifier(
  graph: Graph,
  params: TensorMap,
  data: Dataset,
  options: { x?: string; y?: string; loss?: NodeRef; logits?: string; chunk?: number } = {},
): EvalResult {
  const x = options.x ?? 'x';
  const y = options.y ?? 'y';
  const lossRef = options.loss ?? 'loss';
  const lossName = typeof lossRef === 'string' ? lossRef : label(graph.node(lossRef));
  const logitsName = options.logits ?? 'logits';
  const hasLogits = Object.hasOwn(graph.outputs, logitsName) || graph.names().has(logitsName);
  const chunk = options.chunk ?? 500;
  let lossSum = 0;
  let right = 0;
  let predicted = 0;
  for (let start = 0; start < data.size; start += chunk) {
    const rows = Array.from({ length: Math.min(chunk, data.size - start) }, (_, i) => start + i);
    const labels = takeRows(data.y, rows);
    const out = evaluate(
      graph,
      { [x]: takeRows(data.x, rows), [y]: labels },
      params,
      hasLogits ? [lossName, logitsName] : [lossName],
    );
    lossSum += out[lossName]!.item() * rows.length;
    if (hasLogits) {
      // A prediction per label: per row for labels [n], per position for labels [n, T] and logits [n, T, C].
      const logits = out[logitsName]!;
      const classes = logits.shape[logits.rank - 1]!;
      const positions = Math.min(labels.size, logits.size / classes);
      for (let r = 0; r < positions; r++) {
        let best = 0;
        for (let c = 1; c < classes; c++)
          if (logits.data[r * classes + c]! > logits.data[r * classes + best]!) best = c;
        if (best === labels.data[r]) right++;
      }
      predicted += positions;
    }
  }
  return {
    loss: lossSum / data.size,
    accuracy: hasLogits ? right / predicted : null,
    samples: data.size,
  };
}
