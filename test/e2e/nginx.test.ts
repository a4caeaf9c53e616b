/**
 * infra/nginx/sealed-meet.conf in front of the real server: Debian's nginx (/usr/sbin/nginx, as the current user,
 * everything in a temp dir) runs the shipped file with only its listen addresses/ports, certificate paths, upstream
 * port and log path substituted, and a two-person Chromium call goes through it over HTTPS + WebSocket. Media does
 * not go through nginx (direct to the SFU, as in production).
 *
 * The browsers reach nginx over IPv6 loopback ([::1], the shipped `listen [::]:443` line) and nginx reaches the server
 * over IPv4 (127.0.0.1), so the address the server takes from X-Forwarded-For (TRUST_PROXY=on) is told apart from
 * the proxy's own.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as https from 'node:https';
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAddress } from '../../signaling/src/limits.ts';
import { freePort } from '../infra/coturn.ts';
import { Harness, REPO_ROOT, createMeeting, dumpLogs, expectMediaFlowing, joinByLink, joinFromLobby, roomIdOf, snapshot, waitUntil } from './harness.ts';

const NGINX = process.env['NGINX_PATH'] ?? '/usr/sbin/nginx';
const SHIPPED = path.join(REPO_ROOT, 'infra', 'nginx', 'sealed-meet.conf');
/** Where the browsers reach nginx. */
const CLIENT_IP = '::1';

/** Replaces `from` (which must occur exactly `times` times in the shipped file) with `to`. */
function substitute(text: string, from: string | RegExp, to: string, times: number): string {
  const re = typeof from === 'string' ? undefined : new RegExp(from.source, `${from.flags.replace('g', '')}g`);
  const count = re ? [...text.matchAll(re)].length : text.split(from as string).length - 1;
  if (count !== times) throw new Error(`infra/nginx/sealed-meet.conf: expected ${times}× ${String(from)}, found ${count}`);
  return re ? text.replace(re, to) : text.replaceAll(from as string, to);
}

function request(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { headers, rejectUnauthorized: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

describe('a call through nginx (infra/nginx/sealed-meet.conf)', () => {
  let h: Harness;
  let nginx: ChildProcess | undefined;
  let nginxExit: Promise<void> | undefined;
  let nginxOut = '';
  let dir: string;
  let httpsPort: number;
  let httpPort: number;
  let accessLog: string;
  let proxyUrl: string;

  beforeAll(async () => {
    if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: run \`apt-get install -y nginx\` (infra/setup.sh --for-test does this)`);
    h = await Harness.start({}, { trustProxy: true });
    dir = mkdtempSync(path.join(os.tmpdir(), 'nginx-e2e-'));
    for (const d of ['logs', 'temp']) mkdirSync(path.join(dir, d));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'], { stdio: 'ignore' });
    httpsPort = await freePort();
    httpPort = await freePort();
    accessLog = path.join(dir, 'logs', 'access.log');

    let site = readFileSync(SHIPPED, 'utf8');
    site = substitute(site, 'listen 80;', `listen 127.0.0.1:${httpPort};`, 1);
    site = substitute(site, 'listen [::]:80;', `listen [::1]:${httpPort};`, 1);
    site = substitute(site, 'listen 443 ssl http2;', `listen 127.0.0.1:${httpsPort} ssl http2;`, 1);
    site = substitute(site, 'listen [::]:443 ssl http2;', `listen [::1]:${httpsPort} ssl http2;`, 1);
    site = substitute(site, 'server 127.0.0.1:3000;', `server 127.0.0.1:${h.server.port};`, 1);
    site = substitute(site, '/etc/letsencrypt/live/meet.example.com/fullchain.pem', cert, 1);
    site = substitute(site, '/etc/letsencrypt/live/meet.example.com/privkey.pem', key, 1);
    site = substitute(site, '/var/log/nginx/sealed-meet.access.log', accessLog, 2);
    writeFileSync(path.join(dir, 'sealed-meet.conf'), site);
    // The main configuration Debian's /etc/nginx/nginx.conf would be: the site file inside http {}, temp dirs here.
    const t = (n: string): string => `${n}_temp_path ${path.join(dir, 'temp', n)};`;
    const main = [
      // As root, nginx would switch its workers to another user, who could not read this temp dir.
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      'worker_processes 1;',
      'events { worker_connections 512; }',
      `http { ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(t).join(' ')} include ${path.join(dir, 'sealed-meet.conf')}; }`,
    ].join('\n');
    writeFileSync(path.join(dir, 'nginx.conf'), `${main}\n`);
    const errorLog = path.join(dir, 'logs', 'error.log');
    nginx = spawn(NGINX, ['-p', dir, '-e', errorLog, '-c', path.join(dir, 'nginx.conf'), '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')}; error_log ${errorLog} notice;`], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginx.stdout!.on('data', (d: Buffer) => (nginxOut += d.toString()));
    nginx.stderr!.on('data', (d: Buffer) => (nginxOut += d.toString()));
    nginxExit = new Promise((resolve) => nginx!.once('exit', () => resolve()));
    await waitUntil(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(httpsPort, CLIENT_IP, () => (s.destroy(), resolve(true)));
          s.once('error', () => resolve(false));
        }),
      10_000,
      `nginx listening (${nginxOut}${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''})`,
      100,
    );
    proxyUrl = `https://[${CLIENT_IP}]:${httpsPort}`;
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGQUIT');
      const t = setTimeout(() => nginx?.kill('SIGKILL'), 5000);
      await nginxExit;
      clearTimeout(t);
    }
    await h?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('HTTP redirects to HTTPS; HTTPS serves the client with the server\'s headers and HSTS', async () => {
    for (const host of ['127.0.0.1', `[${CLIENT_IP}]`]) {
      const plain = await request(`http://${host}:${httpPort}/m/abc?x=1`, { Host: 'meet.example.com' });
      expect(plain.status).toBe(301);
      expect(plain.headers.location).toBe('https://meet.example.com/m/abc?x=1');
    }
    const page = await request(`${proxyUrl}/`);
    expect(page.status).toBe(200);
    expect(page.headers['strict-transport-security']).toBe('max-age=63072000');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.headers['server']).toBe('nginx');
  });

  it('two participants see and hear each other through the proxy; the WebSocket went through nginx; the server saw the forwarded address', async () => {
    try {
      const alice = await h.participant('Alice', ['--ignore-certificate-errors']);
      const bob = await h.participant('Bob', ['--ignore-certificate-errors']);
      const link = await createMeeting(alice, proxyUrl);
      expect(link.startsWith(`${proxyUrl}/m/`)).toBe(true);
      const roomId = roomIdOf(link);
      await alice.page.getByTestId('join-created').click();
      await joinFromLobby(alice);
      await joinByLink(bob, link);
      const [a, b] = await Promise.all([snapshot(alice), snapshot(bob)]);
      await expectMediaFlowing(alice, [b.peerId!], 90_000);
      await expectMediaFlowing(bob, [a.peerId!], 90_000);

      // The server's sockets: both upgraded WebSockets from nginx (127.0.0.1), the client address from X-Forwarded-For.
      const sockets = [...h.server.io.sockets.sockets.values()];
      expect(sockets.length).toBeGreaterThanOrEqual(2);
      for (const s of sockets) {
        expect(s.conn.transport.name).toBe('websocket');
        expect(s.request.socket.remoteAddress).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
        expect(s.request.headers['x-forwarded-for']).toBe(CLIENT_IP);
        expect(s.request.headers['x-forwarded-proto']).toBe('https');
        expect(s.request.headers.host).toBe(`[${CLIENT_IP}]:${httpsPort}`);
        // What the per-address quotas count (IPv6 per /64): the browser's address, not nginx's 127.0.0.1.
        expect(clientAddress(s.request, h.server.config.trustProxy)).toBe('0:0:0:0::/64');
      }

      // nginx's access log: the socket.io WebSocket upgrades (101; nginx logs them when they close, so the
      // browsers leave first), the invite page with its room id cut off, and no client address or room id anywhere.
      await Promise.all([alice.close(), bob.close()]);
      const upgraded = (): number => readFileSync(accessLog, 'utf8').split('\n').filter((l) => / GET \/socket\.io\/ 101 /.test(l)).length;
      await waitUntil(() => upgraded() >= 2, 10_000, 'WebSocket upgrades in the access log');
      const log = readFileSync(accessLog, 'utf8');
      const upgrades = log.split('\n').filter((l) => / GET \/socket\.io\/ 101 /.test(l));
      expect(upgrades.length, log).toBeGreaterThanOrEqual(2);
      expect(log).toMatch(/ GET \/m\/- 200 /);
      expect(log).not.toContain(roomId);
      // Every line is exactly time, method, path, status, bytes, duration: no address, query, agent or referrer.
      for (const line of log.trim().split('\n')) expect(line).toMatch(/^\S+ [A-Z]+ \/[^\s?]* \d{3} \d+ \d+\.\d{3}$/);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${dumpLogs(h)}\n--- nginx ---\n${nginxOut}`);
    }
  });
});
