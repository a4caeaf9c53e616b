/**
 * Probes and the drain wait.
 *
 *   GET /healthz → 200 {"status":"ok"}            the process is alive and serving HTTP (liveness)
 *   GET /readyz  → 200 {"status":"ready"}         a mediasoup worker is alive and joins are accepted (readiness)
 *                  503 {"status":"draining"}      SIGTERM drain: no new joins (calls still run)
 *                  503 {"status":"no-worker"}     no live mediasoup worker (one is being respawned)
 *                  503 {"status":"no-redis"}      cluster mode: Redis is not reachable (calls in progress keep running;
 *                                                 a load balancer should send new sockets to other nodes)
 *
 * Served on the public port (before the static files) and on the metrics listener. The answers say nothing
 * else: no counts of rooms, peers or workers, no version (the public port is reachable by anyone). Never cached.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Sfu } from '../../sfu/src/Sfu.ts';
import { SECURITY_HEADERS } from './static.ts';

export const PROBE_STATES = ['ready', 'draining', 'no-worker', 'no-redis'] as const;
export type ProbeState = (typeof PROBE_STATES)[number];

/** What readiness is made of: the drain flag (signaling), the live worker count (SFU), Redis in cluster mode. */
export interface ReadinessSource {
  draining(): boolean;
  liveWorkers(): number;
  /** Cluster mode only: whether this node's Redis connections are up. */
  redisReachable?(): boolean;
}

export function readiness(source: ReadinessSource): ProbeState {
  if (source.draining()) return 'draining';
  if (source.liveWorkers() < 1) return 'no-worker';
  if (source.redisReachable && !source.redisReachable()) return 'no-redis';
  return 'ready';
}

function sendJson(res: ServerResponse, status: number, body: Record<string, string>, head: boolean): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(head ? undefined : text);
}

/**
 * Answers `/healthz` and `/readyz` (GET or HEAD; another method is 405) and returns true; returns false for any
 * other path, which the caller then serves itself.
 */
export function serveProbe(req: IncomingMessage, res: ServerResponse, source: ReadinessSource): boolean {
  const pathname = (req.url ?? '/').split('?')[0];
  if (pathname !== '/healthz' && pathname !== '/readyz') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    sendJson(res, 405, { status: 'method not allowed' }, false);
    return true;
  }
  const head = req.method === 'HEAD';
  if (pathname === '/healthz') {
    sendJson(res, 200, { status: 'ok' }, head);
    return true;
  }
  const state = readiness(source);
  sendJson(res, state === 'ready' ? 200 : 503, { status: state }, head);
  return true;
}

/**
 * Resolves true as soon as the SFU holds no room (at once if it holds none now), or false after `timeoutMs`.
 * Rooms close when their last member leaves (or their worker dies), so this is "every call ended".
 */
export function waitForRoomsEmpty(sfu: Sfu, timeoutMs: number): Promise<boolean> {
  if (sfu.rooms().length === 0) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const done = (empty: boolean): void => {
      clearTimeout(timer);
      sfu.off('roomClosed', onClosed);
      resolve(empty);
    };
    const onClosed = (): void => {
      if (sfu.rooms().length === 0) done(true);
    };
    const timer = setTimeout(() => done(sfu.rooms().length === 0), timeoutMs);
    sfu.on('roomClosed', onClosed);
  });
}
