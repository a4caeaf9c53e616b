/**
 * Test helper: Debian's coturn (`/usr/bin/turnserver`) on loopback, with the TURN REST shared-secret scheme
 * (`use-auth-secret` + `static-auth-secret`), for tests and `npm run doctor` checks.
 *
 *   const turn = await startCoturn();   // free UDP/TCP port + TLS port, fresh secret, self-signed cert, temp dir
 *   turn.urls        // { udp: 'turn:127.0.0.1:P?transport=udp', tcp: 'turn:…:P?transport=tcp', tls: 'turns:127.0.0.1:T?transport=tcp' }
 *   turn.secret      // pass as TURN_SECRET / turnSecret (credentials: signaling/src/turn.ts turnCredentials)
 *   turn.certPem / turn.spkiSha256   // trust the TLS listener (Chromium: --ignore-certificate-errors-spki-list=<spki>)
 *   turn.usage()     // traffic reports parsed from coturn's log; turn.relayedBytes(): peer-side bytes, summed
 *   turn.log()       // coturn's (verbose) log lines, e.g. "… user <name>: incoming packet … error 401: Unauthorized"
 *   await turn.stop();
 * Options: `baseConfig` starts from a real turnserver.conf (infra/coturn/turnserver.conf) with the test's ports and
 * paths; `allowedPeers` (default ['127.0.0.1']); `extra` conf lines; `ports` + `secret` to come back where a killed
 * instance was (an outage and restart, as ice-restart.test.ts plays it):
 *   await turn.kill();                                                        // SIGKILL: clients get no goodbye
 *   const again = await startCoturn({ secret: turn.secret, ports: { port: turn.port, tlsPort: turn.tlsPort } });
 * The new instance has its own temp dir, log and certificate (its `spkiSha256` differs); nothing of the old one's
 * allocations survives, as with a real restart.
 *
 * Nothing is run as a system service: the process, config, log, pid file and certificate live in a temp dir that
 * `stop()` removes (the log stays readable through `log()`/`usage()` after `stop()`). coturn refuses loopback peers
 * by default, and `allowed-peer-ip` alone does not lift that (403 Forbidden IP), so with a 127.x peer allowed this
 * instance also sets `allow-loopback-peers`; the SFU listens on 127.0.0.1 in tests.
 *
 * Traffic counters (verbose log): coturn logs `session <id>: usage: realm=<…>, username=<…>, rp=<n>, rb=<n>, sp=<n>, sb=<n>`
 * (rp/rb: packets/bytes received from the client, sp/sb: sent to it) and a `peer usage:` line for the relayed side,
 * about every 1024 packets of a session and when it closes, each with the counts since the previous report (so sum
 * them). Session ids are reused after a session is deleted. Reports lag, and SIGTERM does not flush the sessions
 * still open: read them while traffic runs (a video call reports every few seconds). Debian's build has no
 * prometheus; the CLI is off.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import * as dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export const TURNSERVER = process.env['TURNSERVER_PATH'] ?? '/usr/bin/turnserver';

export interface CoturnUsage {
  /** coturn session id (one per TURN allocation / client connection). */
  session: string;
  username: string;
  /** `peer`: counters of the relayed (peer) side; `client`: of the client side. */
  side: 'client' | 'peer';
  /** packets / bytes received (from the client, or from the peer). */
  rp: number;
  rb: number;
  /** packets / bytes sent. */
  sp: number;
  sb: number;
}

export interface Coturn {
  urls: { udp: string; tcp: string; tls: string };
  /** The shared secret (coturn `static-auth-secret`). */
  secret: string;
  realm: string;
  host: string;
  port: number;
  tlsPort: number;
  /** PEM of the self-signed certificate the TLS listener uses (CN/SAN 127.0.0.1, localhost). */
  certPem: string;
  certPath: string;
  /**
   * base64 SHA-256 of the certificate's public key (SPKI). Chromium checks the turns: certificate; a participant
   * launched with `--ignore-certificate-errors-spki-list=<this>` trusts this one key only (any other cert still fails).
   */
  spkiSha256: string;
  dir: string;
  /** coturn's log file (verbose). */
  logPath: string;
  /** coturn's log so far, one entry per line. */
  log(): string[];
  /** Every `usage:` report in the log (deltas: sum them). */
  usage(): CoturnUsage[];
  /** Bytes relayed so far (reported): sum of the peer-side `rb` + `sb` (bytes received from / sent to peers). */
  relayedBytes(): number;
  /** SIGKILL (a crash or an outage: no session is closed, no usage is flushed) and wait for the exit; call stop() later to clean up. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export interface CoturnOptions {
  secret?: string;
  realm?: string;
  /** Extra turnserver.conf lines (e.g. `user-quota=1`). */
  extra?: string[];
  /** Peers coturn may relay to (default 127.0.0.1, with `allow-loopback-peers`; `[]`: coturn's own rules only). */
  allowedPeers?: string[];
  /**
   * A turnserver.conf to start from (e.g. infra/coturn/turnserver.conf, to test the production file): its lines are
   * kept except those the test instance must set itself (ports, addresses, secret, realm, cert, logging, pid, user),
   * which the helper's replace.
   */
  baseConfig?: string;
  /**
   * Listen on these ports instead of free ones (e.g. a killed instance's, to play a restart of the same server); the
   * start attempts all use them.
   */
  ports?: { port: number; tlsPort: number };
}

/** Keys the helper always sets for a loopback test instance (a base config's own values for them are dropped). */
const OWN_KEYS = new Set([
  'listening-ip', 'relay-ip', 'external-ip', 'listening-port', 'tls-listening-port', 'alt-listening-port', 'alt-tls-listening-port',
  'min-port', 'max-port', 'static-auth-secret', 'realm', 'cert', 'pkey', 'pidfile', 'log-file', 'syslog', 'no-stdout-log',
  'simple-log', 'proc-user', 'proc-group', 'userdb', 'verbose', 'allowed-peer-ip', 'allow-loopback-peers',
]);

/** The lines of a turnserver.conf without comments, blanks and the keys in `OWN_KEYS`. */
function baseLines(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !OWN_KEYS.has(l.split('=')[0]!.trim()));
}

/** A port free for both TCP and UDP on 127.0.0.1 (probed, then released; fine for tests). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const udpOk = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpOk) return port;
  }
  throw new Error('no free TCP+UDP port found');
}

function tcpReachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const USAGE_RE = /session (\d+): (peer )?usage: realm=<([^>]*)>, username=<([^>]*)>, rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)/;

/**
 * Parses coturn `usage:` log lines, in log order. Each report holds the counts since the session's previous report
 * (coturn resets its counters after reporting, about every 1024 packets and at close), so totals are sums.
 */
export function parseUsage(lines: readonly string[]): CoturnUsage[] {
  const out: CoturnUsage[] = [];
  for (const line of lines) {
    const m = USAGE_RE.exec(line);
    if (!m) continue;
    out.push({
      session: m[1]!,
      side: m[2] ? 'peer' : 'client',
      username: m[4]!,
      rp: Number(m[5]),
      rb: Number(m[6]),
      sp: Number(m[7]),
      sb: Number(m[8]),
    });
  }
  return out;
}

export async function startCoturn(opts: CoturnOptions = {}): Promise<Coturn> {
  const dir = mkdtempSync(path.join(tmpdir(), 'coturn-'));
  const secret = opts.secret ?? randomBytes(32).toString('base64url');
  const realm = opts.realm ?? 'sealed-meet.test';
  const host = '127.0.0.1';
  const certPath = path.join(dir, 'cert.pem');
  const keyPath = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '2',
      '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-addext', 'basicConstraints=critical,CA:TRUE',
    ],
    { stdio: 'ignore' },
  );
  const certPem = readFileSync(certPath, 'utf8');
  const spkiSha256 = createHash('sha256')
    .update(new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = opts.ports?.port ?? (await freePort());
    const tlsPort = opts.ports?.tlsPort ?? (await freePort());
    const allowed = opts.allowedPeers ?? [host];
    const conf = [
      ...(opts.baseConfig ? baseLines(opts.baseConfig) : []),
      `listening-ip=${host}`,
      `relay-ip=${host}`,
      `listening-port=${port}`,
      `tls-listening-port=${tlsPort}`,
      // coturn listens on port+1 for RFC 5780 by default; one listener, so keep it off.
      'no-rfc5780',
      'no-dtls',
      'use-auth-secret',
      `static-auth-secret=${secret}`,
      `realm=${realm}`,
      'fingerprint',
      'stale-nonce=600',
      `cert=${certPath}`,
      `pkey=${keyPath}`,
      'no-tlsv1',
      'no-tlsv1_1',
      'no-cli',
      'no-multicast-peers',
      ...allowed.map((p) => `allowed-peer-ip=${p}`),
      // coturn refuses loopback peers unless told; allowed-peer-ip alone does not lift that.
      ...(allowed.some((p) => p.startsWith('127.')) ? ['allow-loopback-peers'] : []),
      `pidfile=${path.join(dir, 'turnserver.pid')}`,
      `log-file=${path.join(dir, 'turnserver.log')}`,
      'no-stdout-log',
      'simple-log',
      'no-software-attribute',
      // usage lines (traffic counters) and session open/close are logged in verbose mode only
      'verbose',
      `userdb=${path.join(dir, 'turndb')}`,
      ...(opts.extra ?? []),
    ];
    const confPath = path.join(dir, 'turnserver.conf');
    writeFileSync(confPath, conf.join('\n') + '\n', { mode: 0o600 });

    const logPath = path.join(dir, 'turnserver.log');
    const stderr: string[] = [];
    const child: ChildProcess = spawn(TURNSERVER, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
    let finalLog: string[] | undefined;
    const readLog = (): string[] =>
      finalLog ?? (existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').filter(Boolean) : []);
    let exited = false;
    const exit = new Promise<void>((resolve) => child.once('exit', () => {
      exited = true;
      resolve();
    }));

    const deadline = Date.now() + 10_000;
    let up = false;
    while (!exited && Date.now() < deadline) {
      if ((await tcpReachable(host, port)) && (await tcpReachable(host, tlsPort))) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) {
      child.kill('SIGKILL');
      await exit;
      lastError = new Error(`coturn did not come up on ${host}:${port}/${tlsPort}:\n${[...readLog().slice(-30), ...stderr].join('\n')}`);
      continue;
    }

    const kill = async (): Promise<void> => {
      if (!exited) {
        child.kill('SIGKILL');
        await exit;
      }
    };
    const stop = async (): Promise<void> => {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exit;
        clearTimeout(t);
      }
      finalLog ??= readLog();
      rmSync(dir, { recursive: true, force: true });
    };
    return {
      urls: {
        udp: `turn:${host}:${port}?transport=udp`,
        tcp: `turn:${host}:${port}?transport=tcp`,
        tls: `turns:${host}:${tlsPort}?transport=tcp`,
      },
      secret,
      realm,
      host,
      port,
      tlsPort,
      certPem,
      certPath,
      spkiSha256,
      dir,
      logPath,
      log: readLog,
      usage: () => parseUsage(readLog()),
      relayedBytes: () =>
        parseUsage(readLog())
          .filter((u) => u.side === 'peer')
          .reduce((n, u) => n + u.rb + u.sb, 0),
      kill,
      stop,
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error('coturn did not start');
}
