/**
 * `npm run doctor` (signaling/src/doctor.ts): every finding reproduced for real: ports held by this test, certificates
 * made here with openssl, a real coturn (test/infra/coturn.ts) and a closed port, a missing worker binary, and the CLI
 * itself run as a child process (also as an unprivileged user, for "permission denied").
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import * as dgram from 'node:dgram';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkAnnouncedIp,
  checkClientBundle,
  checkConfig,
  checkTcpPort,
  checkNode,
  checkProxy,
  checkRtcPorts,
  checkTls,
  checkTurnReachable,
  checkTurnSettings,
  checkWorkerBin,
  type Finding,
} from '../../signaling/src/doctor.ts';
import { DEFAULT_WORKER_BIN } from '../../sfu/src/workerBin.ts';
import { REPO_ROOT } from '../../sfu/src/paths.ts';
import { turnCredentials } from '../../signaling/src/turn.ts';
import { freePort, startCoturn, type Coturn } from '../infra/coturn.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(path.join(os.tmpdir(), 'doctor-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A self-signed EC certificate for `san` (e.g. "DNS:meet.example.com"), valid `days`; returns [certPath, keyPath]. */
function makeCert(name: string, san: string, days: number, keyFrom?: string): [string, string] {
  const cert = path.join(dir, `${name}-cert.pem`);
  const key = keyFrom ?? path.join(dir, `${name}-key.pem`);
  const keyArgs = keyFrom ? ['-key', keyFrom] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key];
  execFileSync('openssl', ['req', '-x509', ...keyArgs, '-out', cert, '-days', String(days), '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`], { stdio: 'ignore' });
  return [cert, key];
}

const only = (fs: Finding[]): Finding => {
  expect(fs).toHaveLength(1);
  return fs[0]!;
};

/** Holds UDP and TCP `port` on 127.0.0.1 like another process would. */
async function holdPort(port: number): Promise<() => Promise<void>> {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(port, '127.0.0.1', () => r()));
  const tcp = net.createServer();
  await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', () => r()));
  return async () => {
    await new Promise<void>((r) => udp.close(() => r()));
    await new Promise<void>((r) => tcp.close(() => r()));
  };
}

let turn: Coturn;
beforeAll(async () => {
  turn = await startCoturn();
});
afterAll(async () => {
  await turn?.stop();
});

const rtcBase = { rtcMode: 'server' as const, rtcMinPort: 40000, rtcMaxPort: 49999, workers: 1, listenIp: '127.0.0.1', localLanIp: undefined };

describe('ports', () => {
  it('an RTC port held by another process (UDP and TCP) is a FAIL naming it; a free one is ok', async () => {
    const port = await freePort();
    expect(only(await checkRtcPorts({ ...rtcBase, rtcPort: port })).level).toBe('ok');
    const release = await holdPort(port);
    try {
      const fs = await checkRtcPorts({ ...rtcBase, rtcPort: port });
      expect(fs.map((f) => f.level)).toEqual(['fail', 'fail']);
      expect(fs[0]!.message).toContain(`UDP port ${port} on 127.0.0.1 is in use by another process`);
      expect(fs[1]!.message).toContain(`TCP port ${port} on 127.0.0.1 is in use by another process`);
      expect(fs[0]!.fix).toContain(`sport = :${port}`);
    } finally {
      await release();
    }
  });

  it('every worker needs its own port: worker 1 on RTC_PORT+1 held → FAIL for that port only', async () => {
    let base = 0;
    for (let i = 0; i < 20 && !base; i++) {
      const p = await freePort();
      if (p < 65535 && (await checkRtcPorts({ ...rtcBase, rtcPort: p, workers: 2 }))[0]!.level === 'ok') base = p;
    }
    const release = await holdPort(base + 1);
    try {
      const fs = await checkRtcPorts({ ...rtcBase, rtcPort: base, workers: 2 });
      expect(fs.every((f) => f.level === 'fail' && f.message.includes(`port ${base + 1} `))).toBe(true);
      expect(fs).toHaveLength(2);
    } finally {
      await release();
    }
  });

  it('range mode samples the range: one busy sampled port warns, the rest are free', async () => {
    const min = await freePort();
    const release = await holdPort(min);
    try {
      const f = only(await checkRtcPorts({ ...rtcBase, rtcMode: 'range', rtcPort: 0, rtcMinPort: min, rtcMaxPort: Math.min(min + 700, 65535) }));
      expect(f.level).toBe('warn');
      expect(f.message).toContain(`UDP port ${min} on 127.0.0.1, TCP port ${min} on 127.0.0.1 is in use by another process`);
    } finally {
      await release();
    }
  });

  it('the HTTP port in use → FAIL; LISTEN_IP not of this machine → FAIL in plain words', async () => {
    const port = await freePort();
    const release = await holdPort(port);
    try {
      const f = await checkTcpPort('HTTP port', '127.0.0.1', port);
      expect(f.level).toBe('fail');
      expect(f.message).toBe(`TCP port ${port} on 127.0.0.1 is in use by another process`);
    } finally {
      await release();
    }
    expect((await checkTcpPort('HTTP port', '127.0.0.1', port)).level).toBe('ok');
    const f = (await checkRtcPorts({ ...rtcBase, rtcPort: port, listenIp: '198.51.100.7' }))[0]!;
    expect(f.message).toContain("that address is not one of this machine's");
  });
});

describe('TLS certificate', () => {
  const host = 'meet.example.com';
  const tls = (tlsCert: string, tlsKey: string, h = host) => ({ host: h, isLocal: false, announcedIp: '34.120.1.5', tlsCert, tlsKey });

  it('a certificate for the HOST, valid a year, with its key: ok', () => {
    const [cert, key] = makeCert('good', `DNS:${host}`, 365);
    const f = checkTls(tls(cert, key));
    expect(f.level).toBe('ok');
    expect(f.message).toMatch(/^matches meet\.example\.com, valid until \d{4}-\d\d-\d\d \((364|365) days\), key matches$/);
  });

  it('a certificate for another host → FAIL "does not match" naming both', () => {
    const [cert, key] = makeCert('other', 'DNS:other.example.org', 365);
    const f = checkTls(tls(cert, key));
    expect(f.level).toBe('fail');
    expect(f.message).toBe('the certificate does not match HOST=meet.example.com (it is for DNS:other.example.org)');
  });

  it('an IP HOST is matched against IP SANs', () => {
    const [cert, key] = makeCert('ip', 'IP:192.0.2.10', 365);
    expect(checkTls(tls(cert, key, '192.0.2.10')).level).toBe('ok');
    expect(checkTls(tls(cert, key, '192.0.2.11')).message).toContain('does not match HOST=192.0.2.11');
  });

  it('expiring within 14 days → warn; expired → FAIL; not yet valid → FAIL (the clock injected for the last two)', () => {
    const [cert, key] = makeCert('short', `DNS:${host}`, 1);
    const soon = checkTls(tls(cert, key));
    expect(soon.level).toBe('warn');
    expect(soon.message).toMatch(/^the certificate expires in 0 day\(s\), on /);
    const [longCert, longKey] = makeCert('long', `DNS:${host}`, 30);
    expect(checkTls(tls(longCert, longKey), new Date(Date.now() + 20 * DAY)).level).toBe('warn');
    const expired = checkTls(tls(cert, key), new Date(Date.now() + 2 * DAY));
    expect(expired.level).toBe('fail');
    expect(expired.message).toMatch(/^the certificate expired on \d{4}-/);
    expect(checkTls(tls(cert, key), new Date(Date.now() - DAY)).message).toMatch(/^the certificate is not valid before /);
  });

  it('a key that is not the certificate\'s → FAIL; missing files → FAIL naming them; the key is never quoted', () => {
    const [cert] = makeCert('a', `DNS:${host}`, 365);
    const [, otherKey] = makeCert('b', `DNS:${host}`, 365);
    expect(checkTls(tls(cert, otherKey)).message).toBe(`TLS_KEY ${otherKey} is not the key of the certificate in TLS_CERT`);
    expect(checkTls(tls(path.join(dir, 'nope.pem'), otherKey)).message).toBe(`TLS_CERT ${path.join(dir, 'nope.pem')} does not exist`);
    const garbage = path.join(dir, 'garbage-key.pem');
    writeFileSync(garbage, '-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n');
    const f = checkTls(tls(cert, garbage));
    expect(f.level).toBe('fail');
    expect(JSON.stringify(f)).not.toContain('SECRETSECRET');
    expect(checkTls(tls(cert, cert)).level).toBe('fail');
  });

  it('no certificate: ok on localhost, warn (self-signed) elsewhere', () => {
    expect(checkTls({ host: 'localhost', isLocal: true, announcedIp: '127.0.0.1', tlsCert: undefined, tlsKey: undefined })).toMatchObject({ level: 'ok', message: 'none: plain HTTP on localhost' });
    expect(checkTls({ host: '127.0.0.1', isLocal: true, announcedIp: '34.120.1.5', tlsCert: undefined, tlsKey: undefined }).message).toContain('TLS must end in the reverse proxy');
    expect(checkTls({ host, isLocal: false, announcedIp: '34.120.1.5', tlsCert: undefined, tlsKey: undefined }).message).toContain('self-signed');
  });
});

describe('announced IP', () => {
  const iface = (address: string, internal = false): os.NetworkInterfaceInfo => ({
    address,
    netmask: '255.255.255.0',
    family: 'IPv4',
    mac: '00:00:00:00:00:00',
    internal,
    cidr: `${address}/24`,
  });
  const cloudVm = { lo: [iface('127.0.0.1', true)], eth0: [iface('10.0.3.15')] };

  it('an address of this machine is ok (with the real interfaces)', () => {
    const real = os.networkInterfaces();
    const mine = Object.values(real).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address ?? '127.0.0.1';
    expect(only(checkAnnouncedIp({ announcedIp: mine, isLocal: mine === '127.0.0.1' }, real)).level).toBe('ok');
  });

  it('a public IP no interface has → warn explaining 1:1 NAT; a private one → FAIL; loopback off localhost → FAIL', () => {
    const nat = only(checkAnnouncedIp({ announcedIp: '34.120.1.5', isLocal: false }, cloudVm));
    expect(nat.level).toBe('warn');
    expect(nat.message).toContain('1:1 NAT');
    expect(nat.fix).toContain('10.0.3.15');
    const lan = only(checkAnnouncedIp({ announcedIp: '10.0.3.99', isLocal: false }, cloudVm));
    expect(lan.level).toBe('fail');
    expect(lan.message).toContain("private address but not one of this machine's");
    expect(only(checkAnnouncedIp({ announcedIp: '127.0.0.1', isLocal: false }, cloudVm)).level).toBe('fail');
    expect(only(checkAnnouncedIp({ announcedIp: '10.0.3.15', isLocal: false }, cloudVm)).level).toBe('ok');
  });
});

describe('reverse proxy', () => {
  it('loopback HOST with a public ANNOUNCED_IP (behind a proxy) and TRUST_PROXY off → warn; on → nothing', () => {
    const f = only(checkProxy({ isLocal: true, announcedIp: '34.120.1.5', trustProxy: false }));
    expect(f.level).toBe('warn');
    expect(f.fix).toContain('TRUST_PROXY=on');
    expect(checkProxy({ isLocal: true, announcedIp: '34.120.1.5', trustProxy: true })).toEqual([]);
    expect(checkProxy({ isLocal: true, announcedIp: '127.0.0.1', trustProxy: false })).toEqual([]);
  });
});

describe('TURN', () => {
  /** The credentials the server hands a joined member (TURN REST scheme, signaling/src/turn.ts). */
  const restCredentials = (secret: string): { username: string; password: string } => {
    const { username, credential } = turnCredentials(secret, 600);
    return { username, password: credential };
  };

  it('a real coturn answers over UDP, TCP and TLS, and accepts credentials made from its secret', async () => {
    const fs = await checkTurnReachable([turn.urls.udp, turn.urls.tcp, turn.urls.tls], { credentials: restCredentials(turn.secret), ca: turn.certPem });
    for (const f of fs) {
      expect(f.level, f.message).toBe('ok');
      expect(f.message).toMatch(/^answers in \d+ ms \(401 Unauthorized\), accepts our credentials$/);
    }
    // A stun: URL gets a Binding request, which coturn answers with success.
    const [stun] = await checkTurnReachable([`stun:${turn.host}:${turn.port}`]);
    expect(stun!.message).toMatch(/^answers in \d+ ms \(success\)$/);
  });

  it('a wrong secret → FAIL "refused credentials"; an untrusted turns: certificate → warn', async () => {
    const [udp] = await checkTurnReachable([turn.urls.udp], { credentials: restCredentials('not-the-secret') });
    expect(udp!.level).toBe('fail');
    expect(udp!.message).toMatch(/refused credentials made from TURN_SECRET \(401/);
    const [tls] = await checkTurnReachable([turn.urls.tls]);
    expect(tls!.level).toBe('warn');
    expect(tls!.message).toContain('TLS certificate is not trusted');
  });

  it('a closed port → FAIL unreachable, over UDP and TCP, within the timeout', async () => {
    const port = await freePort();
    const started = Date.now();
    const fs = await checkTurnReachable([`turn:127.0.0.1:${port}?transport=udp`, `turn:127.0.0.1:${port}?transport=tcp`, `stun:127.0.0.1:${port}`], { timeoutMs: 1500 });
    expect(Date.now() - started).toBeLessThan(2500);
    expect(fs.map((f) => f.level)).toEqual(['fail', 'fail', 'fail']);
    expect(fs[1]!.message).toBe('unreachable: connection refused (nothing listens on that port)');
    for (const f of fs) expect(f.message).toMatch(/^unreachable: /);
  });

  it('settings: a secret without TURN URLs → FAIL (a configuration error); none off localhost → warn; UDP only → warn', () => {
    const { finding } = checkConfig({ HOST: 'localhost', TURN_SECRET: turn.secret });
    expect(finding.level).toBe('fail');
    expect(finding.message).toContain('TURN_SECRET is set but TURN_URLS has no turn:/turns: URL');
    expect(JSON.stringify(finding)).not.toContain(turn.secret);
    expect(only(checkTurnSettings({ servesOthers: false, turnUrls: [] })).level).toBe('ok');
    expect(only(checkTurnSettings({ servesOthers: true, turnUrls: [] })).level).toBe('warn');
    expect(only(checkTurnSettings({ servesOthers: true, turnUrls: ['turn:t.example:3478'] })).message).toContain('UDP only');
    expect(checkTurnSettings({ servesOthers: true, turnUrls: ['turn:t.example:3478', 'turns:t.example:443?transport=tcp'] })).toEqual([]);
  });
});

describe('runtime and files', () => {
  it('Node older than engines → FAIL; current → ok', () => {
    expect(checkNode('v20.19.0', '>=22')).toMatchObject({ level: 'fail', message: 'Node v20.19.0 is older than the supported >=22' });
    expect(checkNode(process.version, '>=22').level).toBe('ok');
  });

  it('worker binary missing or not executable → FAIL', () => {
    const missing = path.join(dir, 'no-worker');
    expect(checkWorkerBin(missing, 'MEDIASOUP_WORKER_BIN')).toMatchObject({ level: 'fail', message: `MEDIASOUP_WORKER_BIN ${missing} does not exist` });
    expect(checkWorkerBin(dir, 'MEDIASOUP_WORKER_BIN').message).toContain('is not a file');
    const plain = path.join(dir, 'not-executable');
    writeFileSync(plain, '');
    chmodSync(plain, 0o644);
    // root may execute any file with an x bit; with none, access(X_OK) fails for root too.
    expect(checkWorkerBin(plain, 'MEDIASOUP_WORKER_BIN').message).toContain('is not executable by this user');
  });

  it('client bundle missing → FAIL; a configuration error → FAIL naming the variable', () => {
    expect(checkClientBundle(dir).level).toBe('fail');
    expect(checkClientBundle(path.join(REPO_ROOT, '.cache', 'client-test')).level).toBe('ok');
    const { config, finding } = checkConfig({ RTC_PORT: 'abc', HOST: 'localhost' });
    expect(config).toBeUndefined();
    expect(finding.level).toBe('fail');
    expect(finding.message).toMatch(/^the server would refuse to start: RTC_PORT: /);
  });
});

/** Every directory from `p` up to / lets others through (o+x). */
function reachableByOthers(p: string): boolean {
  for (let d = p; ; d = path.dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

/**
 * The checkout as an unprivileged user can run it: this one if it can reach it, else (a clone in a 0700 temp dir,
 * say) the parts the doctor runs from, hard-linked (copied across file systems) into a directory others can enter.
 */
function checkoutForOthers(): string {
  if (reachableByOthers(REPO_ROOT)) return REPO_ROOT;
  const root = path.join(dir, 'checkout');
  mkdirSync(path.join(root, '.cache'), { recursive: true });
  chmodSync(dir, 0o755);
  for (const part of ['package.json', 'infra', 'signaling', 'sfu', 'node_modules', path.join('.cache', 'node')]) {
    const from = path.join(REPO_ROOT, part);
    if (!existsSync(from)) continue; // .cache/node: only where the machine's node is too old
    const to = path.join(root, part);
    try {
      execFileSync('cp', ['-al', from, to]);
    } catch {
      execFileSync('cp', ['-a', from, to]);
    }
  }
  return root;
}

describe('the CLI', () => {
  const run = (env: NodeJS.ProcessEnv, opts: { uid?: number; root?: string } = {}): Promise<{ code: number | null; out: string; ms: number }> =>
    new Promise((resolve) => {
      const started = Date.now();
      const child = spawn('bash', ['infra/node.sh', '--import', 'tsx', 'signaling/src/doctor.ts'], {
        cwd: opts.root ?? REPO_ROOT,
        env: { PATH: process.env['PATH'], HOME: os.tmpdir(), ...env },
        ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (code) => resolve({ code, out, ms: Date.now() - started }));
    });
  let workerBin: string;
  beforeAll(() => {
    // The worker may be rebuilt meanwhile by another session; a copy keeps this test independent of that.
    workerBin = path.join(dir, 'mediasoup-worker');
    if (existsSync(DEFAULT_WORKER_BIN)) copyFileSync(DEFAULT_WORKER_BIN, workerBin);
    else writeFileSync(workerBin, '#!/bin/sh\n');
    chmodSync(workerBin, 0o755);
    chmodSync(dir, 0o755);
  });
  const goodEnv = async (): Promise<NodeJS.ProcessEnv> => ({
    HOST: 'localhost',
    PORT: String(await freePort()),
    RTC_PORT: String(await freePort()),
    WORKERS: '1',
    LOCAL_LAN_MEDIA: 'off',
    CLIENT_DIR: path.join(REPO_ROOT, '.cache', 'client-test'),
    MEDIASOUP_WORKER_BIN: workerBin,
  });

  it('a good local configuration with a real coturn: exit 0, every line ok, the checks in under 5 s', async () => {
    const r = await run({
      ...(await goodEnv()),
      TURN_URLS: [turn.urls.udp, turn.urls.tcp, turn.urls.tls].join(','),
      TURN_SECRET: turn.secret,
      // coturn's self-signed certificate, trusted the way an operator would add a private CA.
      NODE_EXTRA_CA_CERTS: turn.certPath,
    });
    expect(r.code, r.out).toBe(0);
    const lines = r.out.trim().split('\n');
    const checks = lines.filter((l) => /^(ok|warn|FAIL) /.test(l));
    expect(checks.length).toBeGreaterThanOrEqual(9);
    for (const l of checks) expect(l).toMatch(/^ok {4}/);
    // The checks themselves take well under 5 s (the process start, with tsx, depends on the machine's load).
    const summary = /^no FAIL, 0 warning\(s\), \d+ checks in (\d+) ms$/.exec(lines.at(-1)!);
    expect(summary, r.out).not.toBeNull();
    expect(Number(summary![1])).toBeLessThan(5000);
    for (const url of Object.values(turn.urls)) {
      const line = lines.find((l) => l.startsWith(`ok    TURN ${url}: answers in `));
      expect(line, r.out).toMatch(/ ms \(401 Unauthorized\), accepts our credentials$/);
    }
    expect(r.out).not.toContain(turn.secret);
    expect(r.ms).toBeLessThan(30_000);
  });

  it('a missing worker binary and a TURN server that is down: exit 1, FAIL lines, no secret printed', async () => {
    const secret = 'very-secret-turn-shared-secret-4711';
    const turnPort = await freePort();
    const r = await run({
      ...(await goodEnv()),
      MEDIASOUP_WORKER_BIN: path.join(dir, 'gone'),
      TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=tcp`,
      TURN_SECRET: secret,
    });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain(`FAIL  mediasoup worker: MEDIASOUP_WORKER_BIN ${path.join(dir, 'gone')} does not exist`);
    expect(r.out).toContain(`FAIL  TURN turn:127.0.0.1:${turnPort}?transport=tcp: unreachable: connection refused`);
    expect(r.out).not.toContain(secret);
  });

  it('run as an unprivileged user: port 80 → "permission denied", a key only root can read → "not readable"', async () => {
    const [cert, key] = makeCert('root-only', 'DNS:localhost', 365);
    chmodSync(key, 0o600);
    chmodSync(cert, 0o644);
    const r = await run({ ...(await goodEnv()), PORT: '80', TLS_CERT: cert, TLS_KEY: key }, { uid: 65534, root: checkoutForOthers() });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('FAIL  HTTP port: TCP port 80 on 127.0.0.1: permission denied');
    expect(r.out).toContain(`FAIL  TLS certificate: TLS_KEY ${key} is not readable by this user (nobody)`);
  });
});
