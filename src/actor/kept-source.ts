// What a host's tasks read besides their messages: the step's shard table (bindings and loss scale per
// shard, for forwards and VJPs) and the VJP's view of one task, which caches shapes bound per shared
// bindings object.
import { type Bindings, resolveShape } from '../autodiff/forward.ts';
import { InputError } from '../errors.ts';
import type { Shape } from '../tensor/shape.ts';
import type { StepStart } from './messages.ts';

/** The step's shards by replica * microbatches + mb. */
export type ShardTable = readonly ({ readonly bindings: Bindings; readonly scale: number } | undefined)[];

/**
 * The shard table of the last step start seen. Shards with the same sizes share one bindings object,
 * which lets shapes bound for one be reused for the others (KeptSource). Hosts given the same
 * ShardTables (the simulator's, whose shape engine caches bound shapes by bindings object too) build
 * the table once per step and share its bindings.
 */
export class ShardTables {
  private start: StepStart | null = null;
  private table: ShardTable = [];

  of(start: StepStart): ShardTable {
    if (start !== this.start) {
      const shared = new Map<string, Bindings>();
      const entries: ({ bindings: Bindings; scale: number } | undefined)[] = [];
      for (const s of start.shards) {
        const key = JSON.stringify(s.bindings);
        let bindings = shared.get(key);
        if (bindings === undefined) shared.set(key, (bindings = new Map(s.bindings)));
        entries[s.replica * start.microbatches + s.mb] = { bindings, scale: s.scale };
      }
      this.start = start;
      this.table = entries;
    }
    return this.table;
  }
}

/** A VJP's view of one task: the values its actor kept (by `keptIds`) and the shard's shapes. */
export class KeptSource<T> {
  private ids: readonly number[] = [];
  private kept: readonly (T | undefined)[] = [];
  private bindings: Bindings = new Map();
  /**
   * Bound shapes by node id, for the bindings they were bound with: the shards of a step mostly
   * share their bindings (ShardTables), so a shape is resolved once, not at every VJP that reads it.
   */
  private boundFor: (Bindings | undefined)[] | null = null;
  private bound: (readonly number[] | undefined)[] = [];
  /** `shapes`: every node's shape, by id (the graph's columns). */
  constructor(private readonly shapes: readonly Shape[]) {}

  /** `kept`: the actor's kept values, every one there (its forward ran). */
  fill(ids: readonly number[], kept: readonly (T | undefined)[], bindings: Bindings): void {
    this.ids = ids;
    this.kept = kept;
    this.bindings = bindings;
  }

  primal(id: number): T {
    // A VJP reads at most a few values: a scan beats a map.
    for (let k = 0; k < this.ids.length; k++) if (this.ids[k] === id) return this.kept[k]!;
    throw new InputError(`vjp: the value of %${id} was not kept`, { node: id });
  }

  shape(id: number): readonly number[] {
    const shape = this.shapes[id]!;
    if (this.bindings.size === 0) return shape as number[];
    if (this.boundFor === null) {
      this.boundFor = new Array(this.shapes.length).fill(undefined);
      this.bound = new Array(this.shapes.length).fill(undefined);
    }
    if (this.boundFor[id] !== this.bindings) {
      this.bound[id] = resolveShape(shape, this.bindings, 'vjp');
      this.boundFor[id] = this.bindings;
    }
    return this.bound[id]!;
  }
}
