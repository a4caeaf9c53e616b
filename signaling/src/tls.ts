/**
 * TLS material for HTTPS off localhost: the configured TLS_CERT/TLS_KEY, or a self-signed certificate
 * generated once with openssl into `.cache/tls/` (reused while it exists).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { REPO_ROOT } from '../../sfu/src/paths.ts';


export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  selfSigned: boolean;
  certPath: string;
}

export function loadTls(opts: { tlsCert?: string | undefined; tlsKey?: string | undefined; host: string; announcedIp?: string; cacheDir?: string }): TlsMaterial {
  if (opts.tlsCert && opts.tlsKey) {
    return { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey), selfSigned: false, certPath: opts.tlsCert };
  }
  const dir = opts.cacheDir ?? path.join(REPO_ROOT, '.cache', 'tls');
  const certPath = path.join(dir, 'self-signed-cert.pem');
  const keyPath = path.join(dir, 'self-signed-key.pem');
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const names = new Set<string>(['DNS:localhost', 'IP:127.0.0.1']);
    for (const h of [opts.host, opts.announcedIp]) {
      if (!h || h === '0.0.0.0' || h === '::') continue;
      names.add(net.isIP(h) ? `IP:${h}` : `DNS:${h}`);
    }
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certPath, '-days', '365',
        '-subj', '/CN=sealed-meet self-signed',
        '-addext', `subjectAltName=${[...names].join(',')}`,
      ],
      { stdio: 'ignore' },
    );
  }
  return { cert: readFileSync(certPath), key: readFileSync(keyPath), selfSigned: true, certPath };
}
