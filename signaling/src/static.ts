/**
 * Static client files with SPA fallback and security headers.
 * `/` and `/m/<roomId>` serve index.html; other paths serve files under the client dir (no traversal,
 * no dotfiles, no directory listings). Hashed assets (`name-HASH.ext`, as Vite emits them) are cached
 * immutably; index.html is `no-cache`.
 */
import { createReadStream, promises as fs } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as path from 'node:path';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "connect-src 'self' ws: wss:",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=()',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

const SPA_ROUTE = /^\/(?:m\/[A-Za-z0-9_-]{1,64}\/?)?$/;
const HASHED = /[.-][A-Za-z0-9_-]{8,}\.(?:js|mjs|css|wasm|woff2?|svg|png|jpe?g|webp|gif|ico)$/;

export function contentTypeOf(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

export function createStaticHandler(clientDir: string): (req: IncomingMessage, res: ServerResponse) => void {
  const root = path.resolve(clientDir);
  return (req, res) => {
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        return send(res, 405, 'method not allowed');
      }
      let pathname: string;
      try {
        pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      } catch {
        return send(res, 400, 'bad request');
      }
      const spa = SPA_ROUTE.test(pathname);
      const rel = spa ? 'index.html' : pathname.replace(/^\/+/, '');
      if (rel.includes('\0') || rel.split('/').some((seg) => seg.startsWith('.'))) return send(res, 404, 'not found');
      const file = path.resolve(root, rel);
      if (file !== root && !file.startsWith(root + path.sep)) return send(res, 404, 'not found');
      let stat;
      try {
        stat = await fs.stat(file);
      } catch {
        return spa ? send(res, 503, 'client not built (run npm run build:client)') : send(res, 404, 'not found');
      }
      if (!stat.isFile()) return send(res, 404, 'not found');
      const isIndex = path.basename(file) === 'index.html';
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'Content-Type': contentTypeOf(file),
        'Content-Length': stat.size,
        'Cache-Control': !isIndex && HASHED.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    })().catch(() => {
      if (!res.headersSent) send(res, 500, 'internal error');
      else res.destroy();
    });
  };
}
