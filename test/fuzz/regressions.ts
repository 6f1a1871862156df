// Shrunk failing cases the fuzzer found, replayed by every run of the fuzz test. Each stores its
// case and the graph the generator built from it: if the generator changes so that the case builds
// another graph, the test says so, and the entry must be shrunk again (npm run fuzz -- --case ...).
import type { FuzzCase } from './case.ts';

export interface Regression {
  /** What failed, and where it is tracked. */
  title: string;
  case: FuzzCase;
  /** printGraph of the case's graph. */
  graph: string;
}

export const REGRESSIONS: Regression[] = [];
