/**
 * TURN credentials (signaling/src/turn.ts): the REST-scheme shape and expiry, that only a successful join gets them
 * (real server, every socket.io message captured), fresh ones per join, and that a real coturn
 * (test/infra/coturn.ts, Debian's turnserver) allocates with them and refuses expired and forged ones (401),
 * driven by coturn's own client `turnutils_uclient`; and the deploy files infra/coturn/turnserver.conf (started on
 * loopback ports) and coturn-override.conf (systemd-analyze verify).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { IceServer } from '../../sfu/src/config.ts';
import { TurnError, TurnIssuer, turnCredentials, type TurnSettings } from '../../signaling/src/turn.ts';
import { freePort, startCoturn, type Coturn } from '../infra/coturn.ts';
import { test as it } from './fixtures.ts';
import { code, connect, newRoomId, newToken, ok, request } from './helpers.ts';
import { REPO_ROOT } from '../../sfu/src/paths.ts';
import { firstExternalIPv4 } from '../../sfu/src/config.ts';

const SECRET = 'north-of-the-wall-secret';
const URLS = ['turn:turn.example.org:3478?transport=udp', 'turn:turn.example.org:3478?transport=tcp', 'turns:turn.example.org:443?transport=tcp'];
const settings = (over: Partial<TurnSettings> = {}): TurnSettings => ({
  turnUrls: URLS,
  turnSecret: SECRET,
  turnTtl: 600,
  turnUsername: undefined,
  turnCredential: undefined,
  iceTransportPolicy: 'all',
  ...over,
});
const hmac = (secret: string, username: string): string => createHmac('sha1', secret).update(username).digest('base64');
const USERNAME_RE = /^(\d{10}):([A-Za-z0-9_-]{16})$/;

describe('turnCredentials', () => {
  it('TURN REST shape: "<expiry>:<suffix>", base64 HMAC-SHA1 of it (fixed vector, computed with Python hmac)', () => {
    const c = turnCredentials(SECRET, 600, 1_700_000_000_000, 'c2VhbGVkLW1lZXQh');
    expect(c).toEqual({ username: '1700000600:c2VhbGVkLW1lZXQh', credential: 'QnTUJBsFV74ikjz/ok/2DBIB51I=', expiresAt: 1_700_000_600 });
  });

  it('expiry = now (whole seconds) + TTL; the suffix is 12 fresh random bytes, never repeated', () => {
    const now = 1_800_000_123_999;
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const c = turnCredentials(SECRET, 90, now);
      const m = USERNAME_RE.exec(c.username);
      expect(m, c.username).not.toBeNull();
      expect(Number(m![1])).toBe(1_800_000_123 + 90);
      expect(c.expiresAt).toBe(1_800_000_213);
      expect(Buffer.from(m![2]!, 'base64url')).toHaveLength(12);
      expect(c.credential).toBe(hmac(SECRET, c.username));
      seen.add(m![2]!);
    }
    expect(seen.size).toBe(200);
  });

  it('bad input is a typed TurnError', () => {
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return e instanceof TurnError ? e.code : 'not a TurnError';
      }
      return undefined;
    };
    expect(codeOf(() => turnCredentials('', 600))).toBe('BAD_SECRET');
    expect(codeOf(() => turnCredentials(SECRET, 0))).toBe('BAD_TTL');
    expect(codeOf(() => turnCredentials(SECRET, 1.5))).toBe('BAD_TTL');
    expect(codeOf(() => turnCredentials(SECRET, 600, Number.NaN))).toBe('BAD_TIME');
    expect(codeOf(() => turnCredentials(SECRET, 600, Date.now(), 'a:b'))).toBe('BAD_SUFFIX');
    expect(codeOf(() => turnCredentials(SECRET, 600, Date.now(), ''))).toBe('BAD_SUFFIX');
    expect(codeOf(() => new TurnIssuer(settings({ turnTtl: -1 })))).toBe('BAD_TTL');
  });
});

describe('TurnIssuer', () => {
  it('TURN_SECRET: fresh credentials on every call, for all TURN_URLS, with the policy', () => {
    let now = 1_750_000_000_000;
    const issuer = new TurnIssuer(settings({ turnTtl: 120, iceTransportPolicy: 'relay' }), () => now);
    const a = issuer.forJoin();
    now += 5000;
    const b = issuer.forJoin();
    expect(a.iceTransportPolicy).toBe('relay');
    for (const [j, expiry] of [[a, 1_750_000_120], [b, 1_750_000_125]] as const) {
      expect(j.iceServers).toHaveLength(1);
      const s = j.iceServers[0]!;
      expect(s.urls).toEqual(URLS);
      expect(USERNAME_RE.exec(s.username!)?.[1]).toBe(String(expiry));
      expect(s.credential).toBe(hmac(SECRET, s.username!));
    }
    expect(b.iceServers[0]!.username).not.toBe(a.iceServers[0]!.username);
  });

  it('without a secret: the fixed list (static credentials or none), a copy each time', () => {
    const fixed = new TurnIssuer(settings({ turnSecret: undefined, turnUsername: 'u', turnCredential: 'p' }));
    const first = fixed.forJoin();
    expect(first).toEqual({ iceServers: [{ urls: URLS, username: 'u', credential: 'p' }], iceTransportPolicy: 'all' });
    (first.iceServers[0] as IceServer).username = 'changed';
    expect(fixed.forJoin().iceServers[0]!.username).toBe('u');
    expect(TurnIssuer.none().forJoin()).toEqual({ iceServers: [], iceTransportPolicy: 'all' });
  });
});

describe('join answer', () => {
  it('credentials only in a successful join answer (not before join, not for a wrong access token), fresh per join', async ({ startServer }) => {
    const ttl = 300;
    const server = await startServer({ turnUrls: URLS, turnSecret: SECRET, turnTtl: ttl, iceTransportPolicy: 'relay' }, { capture: true });
    const capture = server.capture!;
    const roomId = newRoomId();
    const token = newToken();

    const a = await connect(server.url);
    // Before join: nothing to get them with.
    expect(code(await request(a, 'createTransport', { direction: 'send' }))).toBe('NOT_JOINED');
    expect(code(await request(a, 'restartIce', { transportId: 'x' }))).toBe('NOT_JOINED');

    const t0 = Math.floor(Date.now() / 1000);
    const j1 = await ok(a, 'join', { roomId, accessToken: token });
    const t1 = Math.floor(Date.now() / 1000);
    expect(j1.iceTransportPolicy).toBe('relay');
    expect(j1.iceServers).toHaveLength(1);
    const s1 = j1.iceServers[0]!;
    expect(s1.urls).toEqual(URLS);
    const expiry = Number(USERNAME_RE.exec(s1.username!)?.[1]);
    expect(expiry).toBeGreaterThanOrEqual(t0 + ttl);
    expect(expiry).toBeLessThanOrEqual(t1 + ttl);
    expect(s1.credential).toBe(hmac(SECRET, s1.username!));
    // The suffix is not the member id (or anything else the server sent).
    expect(s1.username).not.toContain(j1.peerId);

    // A wrong access token: refused, and the answer carries no credentials.
    const intruder = await connect(server.url);
    const refused = await request(intruder, 'join', { roomId, accessToken: newToken() });
    expect(code(refused)).toBe('UNAUTHORIZED');
    expect(JSON.stringify(refused)).not.toMatch(/credential|username|turn:/);

    // Leave and join again: new credentials. Another member: its own.
    await ok(a, 'leave', {});
    const j2 = await ok(a, 'join', { roomId, accessToken: token });
    const b = await connect(server.url);
    const j3 = await ok(b, 'join', { roomId, accessToken: token });
    const creds = [j1, j2, j3].map((j) => j.iceServers[0]!);
    expect(new Set(creds.map((c) => c.username)).size).toBe(3);
    expect(new Set(creds.map((c) => c.credential)).size).toBe(3);
    for (const c of creds) expect(c.credential).toBe(hmac(SECRET, c.username!));

    // Everything the server sent or received: each credential only in its own join answer; the secret nowhere.
    const sidOf = (sock: typeof a): string => sock.id!;
    const messages = capture.parsed();
    for (const [c, sid] of [[creds[0]!, sidOf(a)], [creds[1]!, sidOf(a)], [creds[2]!, sidOf(b)]] as const) {
      const carriers = messages.filter((m) => JSON.stringify(m.args).includes(c.credential!));
      expect(carriers.map((m) => [m.dir, m.event, m.sid])).toEqual([['ack', 'join', sid]]);
    }
    const withCreds = messages.filter((m) => JSON.stringify(m.args).includes('"credential"'));
    expect(withCreds.map((m) => `${m.dir} ${m.event}`)).toEqual(['ack join', 'ack join', 'ack join']);
    expect(capture.messages().join('\n')).not.toContain(SECRET);
    // Logs name neither the secret nor any credential.
    const logs = server.logs.join('\n');
    expect(logs).toContain('joined');
    for (const s of [SECRET, ...creds.flatMap((c) => [c.username!, c.credential!])]) expect(logs).not.toContain(s);

    for (const s of [a, b, intruder]) s.disconnect();
  });
});

describe('restartIce answer', () => {
  it('carries fresh credentials (the ICE restart allocates again; the join\'s may be past TURN_TTL)', async ({ startServer }) => {
    const server = await startServer({ turnUrls: URLS, turnSecret: SECRET, turnTtl: 60 });
    const a = await connect(server.url);
    const join = await ok(a, 'join', { roomId: newRoomId(), accessToken: newToken() });
    const transport = await ok(a, 'createTransport', { direction: 'recv' });
    const restarted = await ok(a, 'restartIce', { transportId: transport.id });
    expect(Object.keys(restarted.iceParameters)).toContain('usernameFragment');
    expect(restarted.iceServers).toHaveLength(1);
    const [fromJoin, fresh] = [join.iceServers[0]!, restarted.iceServers[0]!];
    expect(fresh.urls).toEqual(URLS);
    expect(fresh.username).not.toBe(fromJoin.username);
    expect(fresh.credential).toBe(hmac(SECRET, fresh.username!));
    expect(Number(USERNAME_RE.exec(fresh.username!)?.[1])).toBeGreaterThanOrEqual(Number(USERNAME_RE.exec(fromJoin.username!)?.[1]));
    // Someone else's transport: refused, no credentials.
    const b = await connect(server.url);
    await ok(b, 'join', { roomId: newRoomId(), accessToken: newToken() });
    const refused = await request(b, 'restartIce', { transportId: transport.id });
    expect(code(refused)).toBe('NOT_FOUND');
    expect(JSON.stringify(refused)).not.toMatch(/credential|username/);
    a.disconnect();
    b.disconnect();
  });
});

/** Runs coturn's own TURN client; resolves with its exit code and output. */
function uclient(args: string[], timeoutMs = 20_000): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('/usr/bin/turnutils_uclient', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
  });
}

/** turnutils_uclient: allocates on `turn`, binds a channel to the UDP echo peer on 127.0.0.1:`peerPort`, sends `n` messages. */
const allocateOn = (turn: Coturn, peerPort: number, username: string, password: string, opts: { tcp?: boolean; n?: number } = {}) =>
  uclient([...(opts.tcp ? ['-t'] : []), '-u', username, '-w', password, '-p', String(turn.port), '-e', '127.0.0.1', '-r', String(peerPort), '-n', String(opts.n ?? 3), '-m', '1', '127.0.0.1']);

describe('a real coturn (use-auth-secret)', () => {
  let turn: Coturn;
  let peer: ChildProcess;
  let peerPort: number;
  const issuer = (): TurnIssuer => new TurnIssuer(settings({ turnUrls: [turn.urls.udp, turn.urls.tcp, turn.urls.tls], turnSecret: turn.secret, turnTtl: 60 }));
  const allocate = (username: string, password: string, tcp = false) => allocateOn(turn, peerPort, username, password, { tcp });
  const linesOf = (username: string): string[] => turn.log().filter((l) => l.includes(`<${username}>`));

  beforeAll(async () => {
    turn = await startCoturn();
    peerPort = await freePort();
    // coturn's UDP echo peer, the far side of the relay.
    peer = spawn('/usr/bin/turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)], { stdio: 'ignore' });
  });
  afterAll(async () => {
    peer?.kill();
    await turn?.stop();
  });

  it('credentials from a join answer allocate over UDP and TCP, and data goes through the relay', async () => {
    for (const tcp of [false, true]) {
      const s = issuer().forJoin().iceServers[0]!;
      const r = await allocate(s.username!, s.credential!, tcp);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/Total lost packets 0 /);
      expect(linesOf(s.username!).some((l) => l.includes('incoming packet ALLOCATE processed, success')), linesOf(s.username!).join('\n')).toBe(true);
    }
  });

  it('expired, wrong-secret and tampered credentials are refused with 401 and allocate nothing', async () => {
    const valid = turnCredentials(turn.secret, 60);
    const [ts, suffix] = valid.username.split(':') as [string, string];
    const forged = {
      // Made an hour ago with a 60 s TTL.
      expired: turnCredentials(turn.secret, 60, Date.now() - 3600_000),
      wrongSecret: turnCredentials('not-the-secret-of-this-coturn', 60),
      // A later expiry with the original credential.
      longerExpiry: { username: `${Number(ts) + 86_400}:${suffix}`, credential: valid.credential },
      // Another suffix with the original credential.
      otherSuffix: { username: `${ts}:${suffix.slice(1)}A`, credential: valid.credential },
    };
    for (const [what, c] of Object.entries(forged)) {
      const r = await allocate(c.username, c.credential);
      expect(r.status, `${what}: ${r.out}`).not.toBe(0);
      const lines = linesOf(c.username);
      expect(lines.some((l) => l.includes('processed, error 401: Unauthorized')), `${what}:\n${lines.join('\n')}`).toBe(true);
      expect(lines.some((l) => l.includes('ALLOCATE processed, success')), `${what}:\n${lines.join('\n')}`).toBe(false);
    }
  });
});

describe('infra/coturn/turnserver.conf (the production file, on loopback ports)', () => {
  it('starts, authenticates with join credentials, refuses forged ones, and will not relay to loopback', async () => {
    const turn = await startCoturn({ baseConfig: PRODUCTION_CONF, allowedPeers: [] });
    const peerPort = await freePort();
    const peer = spawn('/usr/bin/turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)], { stdio: 'ignore' });
    try {
      const issuer = new TurnIssuer(settings({ turnUrls: [turn.urls.udp], turnSecret: turn.secret }));
      const s = issuer.forJoin().iceServers[0]!;
      const r = await allocateOn(turn, peerPort, s.username!, s.credential!, { n: 1 });
      const lines = turn.log().filter((l) => l.includes(`<${s.username}>`));
      expect(lines.some((l) => l.includes('ALLOCATE processed, success')), lines.join('\n')).toBe(true);
      // The SFU in tests is on 127.0.0.1: the production rules (denied-peer-ip 127.0.0.0/8, no loopback peers) refuse it.
      expect(r.status).not.toBe(0);
      expect(r.out).toMatch(/403 \(Forbidden IP\)/);
      const bad = turnCredentials('not-the-secret-of-this-coturn', 60);
      expect((await allocateOn(turn, peerPort, bad.username, bad.credential, { n: 1 })).status).not.toBe(0);
      expect(turn.log().filter((l) => l.includes(`<${bad.username}>`)).some((l) => l.includes('error 401'))).toBe(true);
    } finally {
      peer.kill();
      await turn.stop();
    }
  });
});

const PRODUCTION_CONF = path.join(REPO_ROOT, 'infra', 'coturn', 'turnserver.conf');
const ipv4 = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
/** The IPv4 `denied-peer-ip=a-b` range of the production file that holds `ip`, if any. */
function deniedRangeOf(ip: string): string | undefined {
  const ranges = readFileSync(PRODUCTION_CONF, 'utf8').match(/^denied-peer-ip=\d+\.\d+\.\d+\.\d+-\d+\.\d+\.\d+\.\d+$/gm) ?? [];
  return ranges.map((l) => l.slice('denied-peer-ip='.length)).find((r) => {
    const [a, b] = r.split('-') as [string, string];
    return ipv4(a) <= ipv4(ip) && ipv4(ip) <= ipv4(b);
  });
}
const LAN = firstExternalIPv4();

describe.skipIf(LAN === undefined || deniedRangeOf(LAN) === undefined)(`production denied-peer-ip / allowed-peer-ip with this machine's ${LAN} (in ${LAN && deniedRangeOf(LAN)})`, () => {
  it('a private SFU address is refused (403) until allowed-peer-ip names it', async () => {
    const peerPort = await freePort();
    const peer = spawn('/usr/bin/turnutils_peer', ['-L', LAN!, '-p', String(peerPort)], { stdio: 'ignore' });
    try {
      const relayTo = async (allowed: string[]) => {
        const turn = await startCoturn({ baseConfig: PRODUCTION_CONF, allowedPeers: allowed });
        try {
          const c = turnCredentials(turn.secret, 60);
          return await uclient(['-u', c.username, '-w', c.credential, '-p', String(turn.port), '-e', LAN!, '-r', String(peerPort), '-n', '3', '127.0.0.1']);
        } finally {
          await turn.stop();
        }
      };
      const denied = await relayTo([]);
      expect(denied.status).not.toBe(0);
      expect(denied.out).toMatch(/403 \(Forbidden IP\)/);
      const allowed = await relayTo([LAN!]);
      expect(allowed.status, allowed.out).toBe(0);
      expect(allowed.out).toMatch(/Total lost packets 0 /);
    } finally {
      peer.kill();
    }
  });
});

describe('infra/coturn/coturn-override.conf (systemd drop-in for port 443)', () => {
  /** systemd-analyze verify of Debian's coturn.service with `dropIn` as its override; returns what it printed. */
  const verify = (dropIn: string): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'coturn-unit-'));
    try {
      copyFileSync('/lib/systemd/system/coturn.service', path.join(dir, 'coturn.service'));
      mkdirSync(path.join(dir, 'coturn.service.d'));
      writeFileSync(path.join(dir, 'coturn.service.d', 'override.conf'), dropIn);
      const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'coturn.service')], { encoding: 'utf8', env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
      return `${r.stdout}${r.stderr}`.trim();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  it('verifies clean with the coturn package unit (and the check does read the drop-in)', () => {
    const ours = readFileSync(path.join(REPO_ROOT, 'infra', 'coturn', 'coturn-override.conf'), 'utf8');
    expect(ours).toMatch(/^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    expect(verify(ours)).toBe('');
    expect(verify(`${ours}AmbientCapabilitiez=CAP_NET_BIND_SERVICE\n`)).toMatch(/override\.conf:\d+: Unknown key 'AmbientCapabilitiez'/);
  });
});
