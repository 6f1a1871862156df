// Authentication passes through to NATS (README "Running on several machines"): a nats-server that
// requires TLS with client certificates and an NKey, and `backflow node` and a coordinator given the
// seed file and the certificates by their flags and options; the node serves runtime after runtime,
// exits 1 when the server refuses it, and 0 when told to stop.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { afterAll, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { createRuntime } from '../../src/runtime/runtime.ts';
import { makeCerts } from '../support/certs.ts';
import { mlp } from '../support/models.ts';
import { describeNats, privateNatsServer } from '../support/nats.ts';
import { spawnCli, stopAll } from '../support/node-processes.ts';
import { expectMatchesReference } from '../support/reference.ts';

afterAll(() => stopAll());

/** An NKey user: its seed in a file (as `--nkey-seed` reads it) and its public key. */
function nkeyUser(dir: string, name: string): { seedFile: string; publicKey: string } {
  const user = nkeys.createUser();
  const seedFile = join(dir, `${name}.nk`);
  writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`);
  return { seedFile, publicKey: user.getPublicKey() };
}

describeNats('NATS authentication: an NKey seed file and TLS', () => {
  const certs = makeCerts();
  afterAll(() => certs.remove());

  it('backflow node and the coordinator join with --nkey-seed and --tls-*; the node serves two runtimes, exits 1 when refused (seed or certificates) and 0 when told to stop', async () => {
    const allowed = nkeyUser(certs.dir, 'allowed');
    const stranger = nkeyUser(certs.dir, 'stranger');
    const { caFile, certFile, keyFile } = certs.good;
    const config = join(certs.dir, 'nats.conf');
    writeFileSync(
      config,
      [
        `tls { cert_file: "${certFile}", key_file: "${keyFile}", ca_file: "${caFile}", verify: true, timeout: 5 }`,
        `authorization { users: [ { nkey: ${allowed.publicKey} } ] }`,
      ].join('\n'),
    );
    const server = await privateNatsServer({ args: ['-c', config] });
    const url = `tls://127.0.0.1:${server.port}`;
    const cluster = `auth-nkey-${process.pid}`;
    const tlsFlags = ['--tls-ca', caFile, '--tls-cert', certFile, '--tls-key', keyFile];
    const nodeArgs = ['--nats', url, '--cluster', cluster, '--listen', '127.0.0.1', ...tlsFlags];
    try {
      // Without the seed, and with a seed the server does not know: refused, exit code 1.
      const refused = [
        spawnCli([...nodeArgs, '--name', 'no-seed']),
        spawnCli([...nodeArgs, '--name', 'stranger', '--nkey-seed', stranger.seedFile]),
      ];
      for (const node of refused) {
        expect(await node.exited).toBe(1);
        expect(node.output()).toMatch(
          /backflow node: InputError: cannot connect to NATS at tls:\/\/127\.0\.0\.1:\d+: .*\(the server refused the credentials/,
        );
      }

      // The right seed without the certificates: the TLS handshake fails, exit code 1.
      const plain = spawnCli([
        '--nats',
        url,
        '--cluster',
        cluster,
        '--name',
        'plain',
        '--nkey-seed',
        allowed.seedFile,
      ]);
      expect(await plain.exited).toBe(1);
      expect(plain.output()).toMatch(
        /backflow node: InputError: cannot connect to NATS at tls:\/\/127\.0\.0\.1:\d+: /,
      );

      const node = spawnCli([...nodeArgs, '--name', 'n', '--nkey-seed', allowed.seedFile]);
      await node.printed('joined cluster');
      const model = mlp();
      const options = { workers: 1 };
      const tls = { caFile, certFile, keyFile };
      const clusterOption = { nats: url, name: cluster, nodes: 1, tls };
      await expect(
        createRuntime(model.graph, {
          ...options,
          params: model.params,
          cluster: { ...clusterOption, nkeySeedFile: stranger.seedFile },
        }),
      ).rejects.toThrow(InputError);
      for (const seed of [1, 2]) {
        const rt = await createRuntime(model.graph, {
          ...options,
          params: model.params,
          cluster: { ...clusterOption, nkeySeedFile: allowed.seedFile },
        });
        try {
          await expectMatchesReference(model.graph, model.params, model.feeds(8, seed), options, rt);
        } finally {
          await rt.close();
        }
      }
      expect(node.output().match(/serving runtime/g)).toHaveLength(2);
      node.child.kill('SIGTERM');
      expect(await node.exited).toBe(0);
      expect(node.output()).toMatch(/backflow node: stopping: told to stop/);
    } finally {
      await server.stop();
    }
  }, 60_000);
});
