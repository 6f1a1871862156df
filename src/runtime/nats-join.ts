// The coordinator's half of the rendezvous (Note [rendezvous]): waiting for node processes, and
// giving each a block of worker ids.
import type { NatsConnection } from '@nats-io/transport-node';
import { InputError } from '../errors.ts';
import { unpackValue } from '../protocol/value-codec.ts';
import {
  type Announcement,
  backflowVersion,
  mismatch,
  type ResolvedCluster,
  readAnnouncement,
  type subjects,
} from './rendezvous.ts';

/** How often the coordinator asks for announcements while it waits. */
const DISCOVER_MS = 200;

/** Nodes in worker-id order: by name, then id. */
const byName = (a: Announcement, b: Announcement) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;

/**
 * Waits for the cluster's nodes: `spec.nodes` idle ones (or the ones named), in worker-id order.
 * Past the deadline, an InputError names who joined, who is busy, and who is missing; a node of
 * another version is an InputError at once.
 */
export function findNodes(
  nc: NatsConnection,
  spec: ResolvedCluster,
  s: ReturnType<typeof subjects>,
): Promise<Announcement[]> {
  const seen = new Map<string, Announcement>();
  const version = backflowVersion();
  return new Promise((resolve, reject) => {
    let finished = false;
    const finish = (settle: () => void) => {
      if (finished) return;
      finished = true;
      clearInterval(ask);
      clearTimeout(deadline);
      sub.unsubscribe();
      settle();
    };
    const pick = (): Announcement[] | null => {
      const idle = [...seen.values()].filter((a) => a.busy === null).sort(byName);
      if (typeof spec.nodes === 'number') return idle.length >= spec.nodes ? idle.slice(0, spec.nodes) : null;
      const named = spec.nodes.map((name) => idle.find((a) => a.name === name));
      return named.every((a) => a !== undefined) ? (named as Announcement[]).sort(byName) : null;
    };
    const sub = nc.subscribe(s.join, {
      callback: (err, msg) => {
        if (err !== null) return;
        let a: Announcement | null;
        try {
          a = readAnnouncement(unpackValue(msg.data, 'an announcement'));
        } catch {
          return;
        }
        if (a === null) return;
        const wrong = mismatch(a, version);
        if (wrong !== null)
          return finish(() =>
            reject(
              new InputError(`node ${a.name} of cluster ${spec.name} cannot join: it runs ${wrong}`, {
                nodeProcess: a.name,
                found: wrong,
              }),
            ),
          );
        seen.set(a.id, a);
        const nodes = pick();
        if (nodes !== null) finish(() => resolve(nodes));
      },
    });
    const discover = () => {
      if (!nc.isClosed()) nc.publish(s.discover);
    };
    const ask = setInterval(discover, DISCOVER_MS);
    const deadline = setTimeout(
      () => finish(() => reject(missing(spec, [...seen.values()]))),
      spec.joinTimeoutMs,
    );
    void nc.flush().then(discover, () => {});
  });
}

function missing(spec: ResolvedCluster, seen: Announcement[]): InputError {
  const idle = seen.filter((a) => a.busy === null).sort(byName);
  const busy = seen.filter((a) => a.busy !== null).sort(byName);
  const wanted =
    typeof spec.nodes === 'number'
      ? `${spec.nodes} node${spec.nodes === 1 ? '' : 's'}`
      : spec.nodes.join(', ');
  const absent =
    typeof spec.nodes === 'number'
      ? `${spec.nodes - idle.length} more`
      : spec.nodes.filter((name) => !idle.some((a) => a.name === name)).join(', ');
  const list = (as: Announcement[]) => (as.length === 0 ? 'none' : as.map((a) => a.name).join(', '));
  return new InputError(
    `cluster ${spec.name}: waited ${spec.joinTimeoutMs} ms for ${wanted}; joined: ${list(idle)}; missing: ${absent}` +
      (busy.length > 0
        ? `; busy with another coordinator: ${busy.map((a) => `${a.name} (${a.busy})`).join(', ')}`
        : '') +
      ` (start them with: backflow node --nats URL --cluster ${spec.name})`,
    {
      cluster: spec.name,
      joined: idle.map((a) => a.name),
      missing: absent,
      busy: busy.map((a) => a.name),
    },
  );
}

/**
 * Worker ids for each node, in contiguous blocks (a pipeline's neighbouring stages share a node), as
 * even as the nodes' hosts allow. An InputError when the nodes offer fewer hosts than the plan has workers.
 */
export function shareWorkers(workers: number, nodes: readonly Announcement[], cluster: string): number[][] {
  const offered = nodes.reduce((sum, a) => sum + a.hosts, 0);
  if (offered < workers)
    throw new InputError(
      `cluster ${cluster}: the plan has ${workers} workers, its nodes offer ${offered} hosts (${nodes.map((a) => `${a.name}: ${a.hosts}`).join(', ')}): start more nodes, give them more --workers, or use fewer workers`,
      { cluster, expected: workers, found: offered },
    );
  const counts = nodes.map(
    (_, i) => Math.floor(workers / nodes.length) + (i < workers % nodes.length ? 1 : 0),
  );
  let excess = 0;
  counts.forEach((c, i) => {
    const over = c - nodes[i]!.hosts;
    if (over > 0) {
      excess += over;
      counts[i] = nodes[i]!.hosts;
    }
  });
  for (let i = 0; excess > 0; i++) {
    const room = Math.min(excess, nodes[i]!.hosts - counts[i]!);
    counts[i]! += room;
    excess -= room;
  }
  let next = 0;
  return counts.map((c) => Array.from({ length: c }, () => next++));
}
