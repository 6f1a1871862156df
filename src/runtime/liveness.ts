// Which node processes of a runtime are alive, as the coordinator sees them (Note [rendezvous]).
import type { TaskInfo } from '../actor/host.ts';
import { WorkerError } from '../errors.ts';
import type { Plan } from '../partition/plan.ts';
import type { BoardStatus } from '../protocol/control.ts';
import { unpackValue } from '../protocol/value-codec.ts';
import { type ClusterEvents, describeStatus } from './cluster.ts';
import { readStatus } from './node-messages.ts';
import type { Announcement, ResolvedCluster } from './rendezvous.ts';

/**
 * Which nodes are alive (Note [rendezvous]): heartbeats with status boards, deaths the nodes report,
 * data links that break, and the NATS connection. The first failure of each node fails the step in
 * flight; later calls to its workers fail at once with it.
 */
export class Liveness {
  private readonly seen: number[];
  private readonly status = new Map<number, BoardStatus>();
  private readonly deaths = new Map<number, WorkerError>();
  private stopped = false;
  private nats: WorkerError | null = null;

  constructor(
    private readonly plan: Plan,
    private readonly events: ClusterEvents,
    private readonly nodes: readonly Announcement[],
    private readonly share: readonly (readonly number[])[],
    private readonly spec: ResolvedCluster,
  ) {
    this.seen = nodes.map(() => performance.now());
  }

  private nodeOf(w: number): number {
    return this.share.findIndex((ids) => ids.includes(w));
  }

  /** Where worker `w` is, told by the worker itself (a failpoint's report). */
  task(w: number, task: TaskInfo): void {
    const step = this.status.get(w)?.step ?? -1;
    this.status.set(w, { phase: task.phase, node: task.node, replica: task.replica, mb: task.mb, step });
  }

  /** Whether node `n` failed (died, went silent, lost its link). */
  gone(n: number): boolean {
    return this.deaths.has(n);
  }

  deathOf(w: number): WorkerError | null {
    return this.nats ?? this.deaths.get(this.nodeOf(w)) ?? null;
  }

  private fail(n: number, error: WorkerError): void {
    if (this.stopped || this.deaths.has(n)) return;
    this.deaths.set(n, error);
    this.events.failure(error);
  }

  /** The error for node `n`'s worker `w`, `how` it went, with what the worker was last seen doing. */
  private nodeError(n: number, w: number, how: string, extra: Record<string, unknown> = {}): WorkerError {
    const node = this.nodes[n]!;
    const last = this.status.get(w);
    const { text, context } =
      last === undefined ? { text: '(no heartbeat yet)', context: {} } : describeStatus(this.plan, last);
    return new WorkerError(`worker ${w} on node ${node.name}: ${how}; it was last seen ${text}`, {
      ...context,
      worker: w,
      nodeProcess: node.name,
      ...extra,
    });
  }

  event(data: Uint8Array): void {
    let e: Record<string, unknown>;
    try {
      e = unpackValue(data, 'a node event') as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof e !== 'object' || e === null) return;
    const n = this.nodes.findIndex((a) => a.id === e.node);
    if (n < 0) return;
    this.seen[n] = performance.now();
    if (e.kind === 'beat' && Array.isArray(e.statuses)) {
      for (const entry of e.statuses) {
        if (!Array.isArray(entry) || !this.share[n]!.includes(entry[0])) continue;
        const status = readStatus(entry[1]);
        if (status !== null) this.status.set(entry[0], status);
      }
    } else if (e.kind === 'death' && this.share[n]!.includes(e.worker as number)) {
      const w = e.worker as number;
      const status = readStatus(e.status);
      if (status !== null) this.status.set(w, status);
      this.fail(n, this.nodeError(n, w, String(e.how ?? 'died').slice(0, 300)));
    }
  }

  check(): void {
    const now = performance.now();
    this.seen.forEach((t, n) => {
      if (this.share[n]!.length > 0 && now - t > this.spec.deadAfterMs)
        this.fail(
          n,
          this.nodeError(
            n,
            this.share[n]![0]!,
            `its node is silent (no heartbeat for ${Math.round(now - t)} ms)`,
          ),
        );
    });
  }

  lostLink(w: number, cause: Error): void {
    const n = this.nodeOf(w);
    this.fail(n, this.nodeError(n, w, `its data link to the coordinator broke (${cause.message})`));
  }

  lostNats(how: string): void {
    if (this.stopped || this.nats !== null) return;
    this.nats = new WorkerError(
      `the coordinator lost its NATS server (${how}): the nodes cannot be reached`,
      {
        phase: 'nats',
        cluster: this.spec.name,
      },
    );
    this.events.failure(this.nats);
  }

  stop(): void {
    this.stopped = true;
  }
}
