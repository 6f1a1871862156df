/**
 * The benchmark harness: a suite measures cases through a `BenchContext` and every result is emitted
 * as it arrives, either as one JSON line (`--json`, for scripts and CI) or as an aligned table line.
 * The machine is shared and noisy: results always carry the median with min and max.
 */
import { readFileSync } from 'node:fs';

/** A figure attached to a result, under a self-explanatory key (`gflops`, `nodes`, `peak_rss_mb` ...). */
export type Figure = number | string | boolean;

export interface BenchResult {
  suite: string;
  case: string;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  runs: number;
  [figure: string]: Figure;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  mean: number;
  runs: number;
}

export interface MeasureOptions {
  /** Timed runs (the `--runs` flag overrides it). Default 10. */
  runs?: number;
  /** Untimed runs first, so the JIT has compiled the hot path. Default 2. */
  warmup?: number;
  /** Keep warming up until this much time has passed too (tier-up takes many calls). Default 100. */
  warmupMs?: number;
  /** Figures to add to the result, or a function of the timings giving them (e.g. a rate from the median). */
  extra?: Record<string, Figure> | ((stats: Stats) => Record<string, Figure>);
}

export interface BenchContext {
  readonly suite: string;
  /** Suite-specific flags given on the command line (without the dashes), e.g. `large`. */
  readonly flags: ReadonlySet<string>;
  /** Times `fn` (awaited when it returns a promise), reports the result and returns it. */
  measure(caseName: string, fn: () => unknown, options?: MeasureOptions): Promise<BenchResult>;
  /** Emits a result, for figures that are not timed by `measure`. */
  report(result: BenchResult): void;
}

export interface Suite {
  name: string;
  description: string;
  /** Flags this suite understands, name (without dashes) to description; shown by `--help`. */
  flags?: Record<string, string>;
  /** Whether `--runs N` sets its cases' timed runs (suites that time in rounds of their own do not). */
  takesRuns?: boolean;
  run(ctx: BenchContext): Promise<void>;
}

export function median(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function stats(samples: readonly number[]): Stats {
  return {
    median: median(samples),
    min: Math.min(...samples),
    max: Math.max(...samples),
    mean: samples.reduce((s, x) => s + x, 0) / samples.length,
    runs: samples.length,
  };
}

/**
 * Peak resident set size of this process so far, in MiB. Where Linux says it (`VmHWM` in
 * /proc/self/status), that figure: getrusage's `maxRSS` survives exec, so a child process started by
 * a runner holding 400 MB reported at least 400 MB whatever it used itself.
 */
export function peakRssMb(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm !== null) return Number(hwm[1]) / 1024;
  } catch {
    // Not Linux: getrusage's figure.
  }
  return process.resourceUsage().maxRSS / 1024;
}

export interface ContextOptions {
  suite: string;
  flags: ReadonlySet<string>;
  /** Overrides every case's `runs` when set. */
  runs?: number;
  emit: (result: BenchResult) => void;
}

export function createContext(options: ContextOptions): BenchContext {
  const { suite, flags, emit } = options;
  return {
    suite,
    flags,
    report: emit,
    async measure(caseName, fn, { runs = 10, warmup = 2, warmupMs = 100, extra = {} } = {}) {
      const timedRuns = options.runs ?? runs;
      const warmupStart = performance.now();
      for (let i = 0; i < warmup || performance.now() - warmupStart < warmupMs; i++) {
        const pending = fn();
        if (isThenable(pending)) await pending;
      }
      const samples: number[] = [];
      for (let i = 0; i < timedRuns; i++) {
        const start = performance.now();
        // Await only what is async, so a synchronous case is timed without a microtask turn.
        const pending = fn();
        if (isThenable(pending)) await pending;
        samples.push(performance.now() - start);
      }
      const s = stats(samples);
      const result: BenchResult = {
        suite,
        case: caseName,
        median_ms: round(s.median),
        min_ms: round(s.min),
        max_ms: round(s.max),
        runs: s.runs,
        ...(typeof extra === 'function' ? extra(s) : extra),
        peak_rss_mb: round(peakRssMb()),
      };
      emit(result);
      return result;
    },
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** Three significant decimals are plenty for noisy timings and keep the JSON lines short. */
export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** One JSON object per line: what `--json` prints. */
export function formatJson(result: BenchResult): string {
  return JSON.stringify(result);
}

const FIXED_KEYS = new Set(['suite', 'case', 'median_ms', 'min_ms', 'max_ms', 'runs']);

/** A readable table line: fixed columns for the timings, then the figures as key=value. */
export function formatTable(result: BenchResult): string {
  const range = `${fmt(result.min_ms)}-${fmt(result.max_ms)}`;
  const figures = Object.entries(result)
    .filter(([key]) => !FIXED_KEYS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'number' ? fmt(value) : value}`)
    .join('  ');
  return [
    result.suite.padEnd(10),
    result.case.padEnd(24),
    fmt(result.median_ms).padStart(10),
    range.padStart(20),
    String(result.runs).padStart(5),
    `  ${figures}`,
  ].join(' ');
}

export function tableHeader(): string {
  return [
    'suite'.padEnd(10),
    'case'.padEnd(24),
    'median ms'.padStart(10),
    'min-max ms'.padStart(20),
    'runs'.padStart(5),
    '  figures',
  ].join(' ');
}

function fmt(x: number): string {
  if (!Number.isFinite(x) || Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(1) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3);
}
