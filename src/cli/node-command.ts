// `backflow node`, and the NATS flags it shares with `backflow train --nats` (Note [rendezvous]).
import type { NatsEndpoint } from '../protocol/nats-connect.ts';
import type { WireTlsFiles } from '../protocol/node-wires.ts';
import { startNode } from '../runtime/node-process.ts';
import type { NatsClusterOptions } from '../runtime/rendezvous.ts';
import { type Spec, UsageError, type Values } from './main.ts';

/** How to reach NATS and which cluster: the same flags on a node and on the coordinator. */
export const NATS_FLAGS: Spec = {
  nats: {
    type: 'string',
    multiple: true,
    value: 'url',
    help: 'the NATS server, nats://HOST:4222 (repeatable for a NATS cluster); tls://HOST:PORT for TLS',
  },
  cluster: {
    type: 'string',
    default: 'default',
    value: 'name',
    help: "the cluster's name (letters, digits, - and _)",
  },
  token: { type: 'string', help: 'the token the NATS server requires' },
  user: { type: 'string', help: 'NATS user (with --pass)' },
  pass: { type: 'string', help: 'NATS password' },
  'nkey-seed': { type: 'string', value: 'file', help: 'a file holding the NKey seed to authenticate with' },
  'tls-ca': { type: 'string', value: 'file', help: "the CA of the NATS server's certificate" },
  'tls-cert': { type: 'string', value: 'file', help: "this process's TLS certificate (with --tls-key)" },
  'tls-key': { type: 'string', value: 'file', help: "this process's TLS key" },
  'data-tls-ca': {
    type: 'string',
    value: 'file',
    help: 'mutual TLS on the data links: the CA of every certificate',
  },
  'data-tls-cert': {
    type: 'string',
    value: 'file',
    help: "mutual TLS on the data links: this process's certificate",
  },
  'data-tls-key': { type: 'string', value: 'file', help: "mutual TLS on the data links: this process's key" },
};

/** The data links' TLS files of the flags, or undefined without them (all three or none). */
export function dataTlsFiles(v: Values): WireTlsFiles | undefined {
  const files = ['data-tls-ca', 'data-tls-cert', 'data-tls-key'].map((k) => v[k]);
  if (files.every((f) => f === undefined)) return undefined;
  if (!files.every((f) => typeof f === 'string'))
    throw new UsageError('--data-tls-ca, --data-tls-cert and --data-tls-key go together');
  const [caFile, certFile, keyFile] = files as string[];
  return { caFile: caFile!, certFile: certFile!, keyFile: keyFile! };
}

export const NODE: Spec = {
  ...NATS_FLAGS,
  workers: { type: 'string', default: '1', help: 'hosts this node offers (worker threads)' },
  name: { type: 'string', help: "this node's name (default HOSTNAME-PID); worker ids follow names" },
  listen: {
    type: 'string',
    default: '0.0.0.0',
    value: 'address',
    help: 'the address the data ports listen on',
  },
  advertise: {
    type: 'string',
    value: 'address',
    help: 'the address others reach this node at (default: --listen)',
  },
  'data-port': {
    type: 'string',
    default: '0',
    value: 'port',
    help: 'host i listens on PORT + i (default 0: any free port; set it to open a firewall)',
  },
};

/** The endpoint of the NATS flags; a UsageError without --nats. */
export function natsEndpoint(v: Values): NatsEndpoint {
  const servers = [v['nats'] ?? []].flat().flatMap((s) => String(s).split(','));
  if (servers.length === 0)
    throw new UsageError('--nats: expected the NATS server, e.g. --nats nats://127.0.0.1:4222');
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const tls = { caFile: str('tls-ca'), certFile: str('tls-cert'), keyFile: str('tls-key') };
  const given = Object.fromEntries(Object.entries(tls).filter(([, x]) => x !== undefined));
  return {
    servers,
    ...(str('token') !== undefined ? { token: str('token') } : {}),
    ...(str('user') !== undefined ? { user: str('user'), pass: str('pass') } : {}),
    ...(str('nkey-seed') !== undefined ? { nkeySeedFile: str('nkey-seed') } : {}),
    ...(Object.keys(given).length > 0 ? { tls: given } : {}),
  };
}

/** The runtime's cluster option of `backflow train --nats ... --nodes N`. */
export function clusterOption(v: Values, nodes: string, data: string): NatsClusterOptions {
  const { servers, ...auth } = natsEndpoint(v);
  const count = Number(nodes);
  return {
    nats: servers,
    name: String(v['cluster']),
    nodes: /^\d+$/.test(nodes) ? count : nodes.split(',').filter((s) => s !== ''),
    data: data === 'nats' ? 'nats' : 'tcp',
    ...auth,
    ...(dataTlsFiles(v) !== undefined ? { dataTls: dataTlsFiles(v) } : {}),
  };
}

/** `backflow node`: serves until told to stop (SIGINT, SIGTERM) or its coordinator is gone; the exit code. */
export async function node(v: Values): Promise<number> {
  const hosts = Number(v['workers']);
  const dataPort = Number(v['data-port']);
  if (!Number.isInteger(dataPort) || dataPort < 0 || dataPort > 65535)
    throw new UsageError(`--data-port: expected a port in [0, 65535], found ${v['data-port']}`);
  const log = (line: string) => console.log(`backflow node: ${line}`);
  const node = await startNode({
    nats: natsEndpoint(v),
    cluster: String(v['cluster']),
    hosts,
    listen: String(v['listen']),
    dataPort,
    log,
    ...(typeof v['name'] === 'string' ? { name: v['name'] } : {}),
    ...(typeof v['advertise'] === 'string' ? { advertise: v['advertise'] } : {}),
    ...(dataTlsFiles(v) !== undefined ? { dataTls: dataTlsFiles(v)! } : {}),
  });
  const onSignal = () => void node.stop();
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    return await node.done;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}
