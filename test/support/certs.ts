// Certificates for TLS tests, made with openssl in a temporary directory: a CA, a certificate it
// signed (for every node and the coordinator: the CA is the trust anchor), and one of another CA.
// The signed certificates name 127.0.0.1 and localhost, so that a local nats-server can serve them
// to clients that check the server's name.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Certs {
  readonly dir: string;
  /** Signed by the cluster's CA. */
  readonly good: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** Signed by another CA (and trusting only that one). */
  readonly stranger: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  remove(): void;
}

export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'backflow-certs-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const pair = (name: string) => {
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name}-ca`,
      '-keyout',
      `${name}-ca.key`,
      '-out',
      `${name}-ca.pem`,
    );
    ssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${name}-ca.pem`,
      '-CAkey',
      `${name}-ca.key`,
      '-CAcreateserial',
      '-extfile',
      'san.ext',
      '-days',
      '2',
      '-out',
      `${name}.pem`,
    );
    return {
      caFile: join(dir, `${name}-ca.pem`),
      certFile: join(dir, `${name}.pem`),
      keyFile: join(dir, `${name}.key`),
    };
  };
  return {
    dir,
    good: pair('cluster'),
    stranger: pair('stranger'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
