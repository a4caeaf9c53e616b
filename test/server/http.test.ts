/** HTTP(S) side of main.ts: static client, SPA routes, content types, caching and security headers. */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect } from 'vitest';
import { io as ioClient } from 'socket.io-client';
import { CONTENT_SECURITY_POLICY } from '../../signaling/src/static.ts';
import { startServerUntil, test } from './fixtures.ts';
import { connected, newRoomId, newToken, type TestSocket } from './helpers.ts';

/** `clientDir`: a built-client stand-in for the file; `server`: serving it. */
const it = test
  .extend('clientDir', { scope: 'file' }, async ({}, { onCleanup }) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-client-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(path.join(dir, 'assets'));
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>sealed-meet</title>');
    writeFileSync(path.join(dir, 'assets', 'index-AbCd12_x.js'), 'console.log(1)');
    writeFileSync(path.join(dir, 'assets', 'index-Zz9y8x7w.css'), 'body{}');
    writeFileSync(path.join(dir, 'favicon.svg'), '<svg/>');
    writeFileSync(path.join(dir, '.secret'), 'nope');
    return dir;
  })
  .extend('server', { scope: 'file' }, async ({ clientDir }, { onCleanup }) => startServerUntil(onCleanup, { workers: 1, clientDir }));

describe('static client', () => {
  it('serves index.html for / and /m/<roomId> with the security headers', async ({ server }) => {
    for (const p of ['/', `/m/${newRoomId()}`]) {
      const res = await fetch(server.url + p);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(await res.text()).toContain('<title>sealed-meet</title>');
      expect(res.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('permissions-policy')).toMatch(/camera=\(self\).*microphone=\(self\).*display-capture=\(self\)/);
      expect(res.headers.get('cache-control')).toBe('no-cache');
    }
    expect(CONTENT_SECURITY_POLICY).toBe(
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    );
  });

  it('hashed assets are immutable with the right content types', async ({ server }) => {
    const js = await fetch(`${server.url}/assets/index-AbCd12_x.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const css = await fetch(`${server.url}/assets/index-Zz9y8x7w.css`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    const svg = await fetch(`${server.url}/favicon.svg`);
    expect(svg.headers.get('content-type')).toBe('image/svg+xml');
    expect(svg.headers.get('cache-control')).toBe('no-cache');
  });

  it('404s for missing files, dotfiles and traversal; 405 for POST', async ({ server }) => {
    expect((await fetch(`${server.url}/nope.js`)).status).toBe(404);
    expect((await fetch(`${server.url}/.secret`)).status).toBe(404);
    expect((await fetch(`${server.url}/%2e%2e/%2e%2e/etc/passwd`)).status).toBe(404);
    expect((await fetch(`${server.url}/assets/..%2f..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/m/bad*id`)).status).toBe(404);
    expect((await fetch(`${server.url}/`, { method: 'POST' })).status).toBe(405);
  });
});

describe('HTTPS off localhost', () => {
  it('generates a self-signed certificate and serves HTTPS + socket.io over it', async ({ clientDir, startServer, onTestFinished }) => {
    const tlsDir = mkdtempSync(path.join(tmpdir(), 'sealed-meet-tls-'));
    onTestFinished(() => rmSync(tlsDir, { recursive: true, force: true }));
    const s = await startServer({ workers: 1, host: '127.0.0.2', listenIp: '127.0.0.2', clientDir }, { tlsCacheDir: tlsDir });
    expect(s.url).toMatch(/^https:\/\/127\.0\.0\.2:\d+$/);
    const body = await new Promise<{ status: number; csp: string | undefined; text: string }>((resolve, reject) => {
      https
        .get(`${s.url}/`, { rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, csp: res.headers['content-security-policy'] as string | undefined, text }));
        })
        .on('error', reject);
    });
    expect(body.status).toBe(200);
    expect(body.csp).toBe(CONTENT_SECURITY_POLICY);
    const sock: TestSocket = ioClient(s.url, { transports: ['websocket'], forceNew: true, reconnection: false, rejectUnauthorized: false });
    await connected(sock);
    const res = await sock.emitWithAck('join', { roomId: newRoomId(), accessToken: newToken() });
    expect(res.ok).toBe(true);
    const t = await sock.emitWithAck('createTransport', { direction: 'recv' });
    expect(t.ok && t.data.iceCandidates.length > 0 && t.data.iceCandidates.every((c) => c.ip === '127.0.0.2')).toBe(true);
    sock.disconnect();
  });
});

describe('socket origin check', () => {
  const tryConnect = (url: string, origin: string | undefined): Promise<boolean> =>
    new Promise((resolve) => {
      const sock: TestSocket = ioClient(url, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        ...(origin ? { extraHeaders: { origin } } : {}),
      });
      sock.once('connect', () => {
        sock.disconnect();
        resolve(true);
      });
      sock.once('connect_error', () => {
        sock.disconnect();
        resolve(false);
      });
    });

  it('accepts same-origin and origin-less clients, refuses other origins unless listed', async ({ server, clientDir, startServer }) => {
    const host = new URL(server.url).host;
    expect(await tryConnect(server.url, undefined)).toBe(true);
    expect(await tryConnect(server.url, `http://${host}`)).toBe(true);
    expect(await tryConnect(server.url, 'https://evil.example')).toBe(false);
    const s = await startServer({ workers: 1, clientDir, allowedOrigins: 'http://localhost:5173' });
    expect(await tryConnect(s.url, 'http://localhost:5173')).toBe(true);
    expect(await tryConnect(s.url, 'https://evil.example')).toBe(false);
  });
});
