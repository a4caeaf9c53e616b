/**
 * Operations: /healthz and /readyz (public port and metrics listener), Prometheus /metrics (content during a live
 * call, and that no label names a room, a member or an address), metrics off by default (no listener at all), and
 * the drain a SIGTERM starts: readiness flips, clients are told, new joins are refused with DRAINING while the call
 * goes on, and the server closes once its rooms are empty or at the deadline.
 */
import { getHeapSpaceStatistics } from 'node:v8';
import { io as ioClient } from 'socket.io-client';
import { describe, expect } from 'vitest';
import { ERROR_CODES } from '../../sfu/src/wire.ts';
import { PROBE_STATES, readiness } from '../../signaling/src/health.ts';
import { RELAY_TARGETS } from '../../signaling/src/metrics.ts';
import { test as it } from './fixtures.ts';
import {
  clientRtpCapabilities,
  code,
  connect,
  connected,
  joinWithTransports,
  newRoomId,
  newToken,
  next,
  ok,
  opusRtpParameters,
  request,
  vp8SimulcastRtpParameters,
  waitFor,
  type TestServer,
  type TestSocket,
} from './helpers.ts';

const METRICS = { metricsListen: '127.0.0.1:0' } as const;

async function probe(base: string, path: string, method = 'GET'): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(base + path, { method });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

async function scrape(server: TestServer): Promise<string> {
  const res = await fetch(`${server.metricsUrl!}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const value = (all: Sample[], name: string, labels: Record<string, string> = {}): number | undefined =>
  all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

/** Every label name we (or prom-client's default metrics) may use, each with its closed set of values. */
function closedLabelSets(workers: number): Record<string, (v: string) => boolean> {
  const [major, minor, patch] = process.versions.node.split('.');
  const spaces = new Set(getHeapSpaceStatistics().map((s) => s.space_name.replace(/_space$/, '')));
  const oneOf = (...values: readonly string[]) => (v: string) => values.includes(v);
  return {
    code: oneOf(...ERROR_CODES),
    target: oneOf(...RELAY_TARGETS),
    worker: oneOf(...Array.from({ length: workers }, (_, i) => String(i))),
    mode: oneOf('user', 'system'),
    le: (v) => v === '+Inf' || Number.isFinite(Number(v)),
    kind: oneOf('major', 'minor', 'incremental', 'weakcb'),
    space: (v) => spaces.has(v),
    // Node's own resource and handle class names (TCPServerWrap, Timeout, …): identifiers of the runtime.
    type: (v) => /^[A-Z][A-Za-z]*$/.test(v),
    version: oneOf(process.version),
    major: oneOf(major!),
    minor: oneOf(minor!),
    patch: oneOf(patch!),
  };
}

/** Listening net servers of this process (the public HTTP server, the metrics listener). */
function listeningServers(): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h !== null && typeof h === 'object' && 'listening' in h && (h as { listening: boolean }).listening).length;
}

/** Two members, each with a connected send and recv transport, in a fresh room. */
async function twoInARoom(server: TestServer) {
  const roomId = newRoomId();
  const token = newToken();
  const a = await joinWithTransports(server.url, roomId, token);
  const b = await joinWithTransports(server.url, roomId, token);
  return { roomId, token, a, b };
}

describe('health and readiness probes', () => {
  it('/healthz and /readyz on the public port: tiny JSON, no-store, no counts, GET/HEAD only', async ({ startServer }) => {
    const server = await startServer({ workers: 1 });
    // A live room: the probes still say nothing about it.
    const roomId = newRoomId();
    const a = await joinWithTransports(server.url, roomId, newToken());
    const health = await probe(server.url, '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toBe('{"status":"ok"}');
    expect(health.headers.get('cache-control')).toBe('no-store');
    expect(health.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const ready = await probe(server.url, '/readyz?x=1');
    expect(ready.status).toBe(200);
    expect(ready.body).toBe('{"status":"ready"}');
    expect(ready.headers.get('cache-control')).toBe('no-store');
    expect(ready.headers.get('x-content-type-options')).toBe('nosniff');
    const head = await probe(server.url, '/readyz', 'HEAD');
    expect([head.status, head.body]).toEqual([200, '']);
    const post = await probe(server.url, '/healthz', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    a.socket.disconnect();
  });

  it('readiness: ready only with a live worker and no drain', () => {
    expect(readiness({ draining: () => false, liveWorkers: () => 2 })).toBe('ready');
    expect(readiness({ draining: () => false, liveWorkers: () => 0 })).toBe('no-worker');
    expect(readiness({ draining: () => true, liveWorkers: () => 2 })).toBe('draining');
    expect(readiness({ draining: () => true, liveWorkers: () => 0 })).toBe('draining');
    expect(readiness({ draining: () => false, liveWorkers: () => 2, redisReachable: () => false })).toBe('no-redis');
    expect(readiness({ draining: () => false, liveWorkers: () => 2, redisReachable: () => true })).toBe('ready');
    expect(readiness({ draining: () => true, liveWorkers: () => 2, redisReachable: () => false })).toBe('draining');
    expect(PROBE_STATES).toEqual(['ready', 'draining', 'no-worker', 'no-redis']);
  });
});

describe('metrics', () => {
  it('are off by default: no listener, no metrics path on the public port', async ({ startServer }) => {
    const before = listeningServers();
    const off = await startServer({ workers: 1 });
    expect(off.config.metricsListen).toBeUndefined();
    expect(off.metricsUrl).toBeUndefined();
    expect(listeningServers() - before).toBe(1);
    const res = await probe(off.url, '/metrics');
    expect(res.status).toBe(404);
    expect(res.body).not.toContain('sealed_meet_');
    await off.close();
    // The same with METRICS_LISTEN: one more listener, on its own port.
    const before2 = listeningServers();
    const on = await startServer({ workers: 1, ...METRICS });
    expect(listeningServers() - before2).toBe(2);
    expect(new URL(on.metricsUrl!).port).not.toBe(String(on.port));
    expect((await probe(on.url, '/metrics')).status).toBe(404);
    expect((await probe(on.metricsUrl!, '/')).status).toBe(404);
  });

  it('a live call: counts are right, and nothing in the exposition names the room, a member or an address', async ({ startServer }) => {
    const server = await startServer({ workers: 2, ...METRICS });
    const { roomId, token, a, b } = await twoInARoom(server);
    const video = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'video', rtpParameters: vp8SimulcastRtpParameters(), source: 'camera' });
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    const cv = await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: video.producerId, rtpCapabilities: clientRtpCapabilities() });
    const blob = 'A'.repeat(100);
    const got = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { to: b.peerId, blob });
    await got;
    const got2 = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { blob: 'B'.repeat(40) });
    await got2;
    expect(code(await request(a.socket, 'relay', { to: 'nobody', blob }))).toBe('NOT_FOUND');
    expect(code(await request(b.socket, 'join', { roomId, accessToken: token }))).toBe('ALREADY_JOINED');
    const intruder = await connect(server.url);
    expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');

    const text = await scrape(server);
    const all = samples(text);
    expect(value(all, 'sealed_meet_rooms')).toBe(1);
    expect(value(all, 'sealed_meet_peers')).toBe(2);
    expect(value(all, 'sealed_meet_transports')).toBe(4);
    expect(value(all, 'sealed_meet_producers')).toBe(2);
    expect(value(all, 'sealed_meet_consumers')).toBe(1);
    expect(value(all, 'sealed_meet_workers')).toBe(2);
    expect(value(all, 'sealed_meet_draining')).toBe(0);
    expect(value(all, 'sealed_meet_relay_messages_total', { target: 'member' })).toBe(1);
    expect(value(all, 'sealed_meet_relay_messages_total', { target: 'room' })).toBe(1);
    expect(value(all, 'sealed_meet_relay_bytes_total')).toBe(100 + 40);
    expect(value(all, 'sealed_meet_signaling_errors_total', { code: 'NOT_FOUND' })).toBe(1);
    expect(value(all, 'sealed_meet_signaling_errors_total', { code: 'ALREADY_JOINED' })).toBe(1);
    expect(value(all, 'sealed_meet_signaling_errors_total', { code: 'UNAUTHORIZED' })).toBe(1);
    expect(value(all, 'sealed_meet_signaling_errors_total', { code: 'DRAINING' })).toBe(0);
    // Every code is there from the start.
    for (const c of ERROR_CODES) expect(value(all, 'sealed_meet_signaling_errors_total', { code: c }), c).toBeTypeOf('number');
    expect(value(all, 'sealed_meet_join_duration_seconds_count')).toBe(2);
    expect(value(all, 'sealed_meet_join_duration_seconds_sum')).toBeGreaterThan(0);
    expect(value(all, 'sealed_meet_join_duration_seconds_bucket', { le: '+Inf' })).toBe(2);
    for (const w of ['0', '1']) {
      expect(value(all, 'sealed_meet_worker_cpu_seconds_total', { worker: w, mode: 'user' })).toBeGreaterThan(0);
      expect(value(all, 'sealed_meet_worker_cpu_seconds_total', { worker: w, mode: 'system' })).toBeGreaterThanOrEqual(0);
      expect(value(all, 'sealed_meet_worker_max_rss_bytes', { worker: w })).toBeGreaterThan(1_000_000);
    }
    // prom-client's default process metrics.
    expect(value(all, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value(all, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(value(all, 'nodejs_eventloop_lag_seconds')).toBeTypeOf('number');

    // Privacy: no id of this call, no address, anywhere in the text; every label from a closed set.
    const ids = [roomId, token, a.peerId, b.peerId, video.producerId, audio.producerId, cv.consumerId, a.sendTransportId, a.recvTransportId, b.recvTransportId];
    for (const id of ids) expect(text, `metrics contain ${id}`).not.toContain(id);
    for (const address of ['127.0.0.1', '::1', 'localhost']) expect(text, `metrics contain ${address}`).not.toContain(address);
    for (const w of server.sfu.pool.workers) expect(all.some((s) => Object.values(s.labels).includes(String(w.pid)))).toBe(false);
    const allowed = closedLabelSets(2);
    for (const s of all) {
      for (const [k, v] of Object.entries(s.labels)) {
        expect(Object.keys(allowed), `label name ${k} on ${s.name}`).toContain(k);
        expect(allowed[k]!(v), `${s.name}{${k}="${v}"}`).toBe(true);
      }
    }
    // Our own metrics only ever use these label names.
    for (const s of all.filter((x) => x.name.startsWith('sealed_meet_'))) {
      for (const k of Object.keys(s.labels)) expect(['code', 'target', 'worker', 'mode', 'le']).toContain(k);
    }
    for (const s of [a.socket, b.socket, intruder]) s.disconnect();
  });
});

describe('drain (what SIGTERM does)', () => {
  it('readiness goes 503, clients are told, new joins get DRAINING while the call goes on; closes once the rooms are empty', async ({ startServer }) => {
    const server = await startServer({ workers: 1, ...METRICS });
    const { roomId, token, a, b } = await twoInARoom(server);
    const told = [next(a.socket, 'draining'), next(b.socket, 'draining')];
    const t0 = Date.now();
    const drained = server.drain(60_000);
    expect(server.draining).toBe(true);
    for (const notice of await Promise.all(told)) {
      expect(notice.deadlineMs).toBeGreaterThan(55_000);
      expect(notice.deadlineMs).toBeLessThanOrEqual(60_000);
    }
    for (const base of [server.url, server.metricsUrl!]) {
      const ready = await probe(base, '/readyz');
      expect([ready.status, ready.body, ready.headers.get('cache-control')]).toEqual([503, '{"status":"draining"}', 'no-store']);
      expect((await probe(base, '/healthz')).status).toBe(200);
    }
    // A new client is told on connect, and its join is refused with the typed code; it creates nothing.
    const late: TestSocket = ioClient(server.url, { transports: ['websocket'], forceNew: true, reconnection: false, autoConnect: false });
    const lateTold = next(late, 'draining');
    late.connect();
    await connected(late);
    const refused = await request(late, 'join', { roomId: newRoomId(), accessToken: newToken() });
    expect(refused.ok ? null : refused.error).toEqual({ code: 'DRAINING', message: 'the server is restarting; join again in a moment' });
    expect(code(await request(late, 'join', { roomId, accessToken: token }))).toBe('DRAINING');
    expect((await lateTold).deadlineMs).toBeLessThanOrEqual(60_000);
    expect(server.sfu.rooms().length).toBe(1);
    expect(server.sfu.getRoom(roomId)!.peerCount).toBe(2);
    // The call goes on: requests of joined members still work.
    const audio = await ok(a.socket, 'produce', { transportId: a.sendTransportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'mic' });
    await ok(b.socket, 'consume', { transportId: b.recvTransportId, producerId: audio.producerId, rtpCapabilities: clientRtpCapabilities() });
    const relayed = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { blob: 'QUJD' });
    expect((await relayed).blob).toBe('QUJD');
    const all = samples(await scrape(server));
    expect(value(all, 'sealed_meet_draining')).toBe(1);
    expect(value(all, 'sealed_meet_signaling_errors_total', { code: 'DRAINING' })).toBe(2);
    expect(value(all, 'sealed_meet_peers')).toBe(2);

    // The room empties: the drain ends early (true) and the server is closed.
    let settled = false;
    void drained.then(() => (settled = true));
    await ok(a.socket, 'leave', {});
    expect(settled).toBe(false);
    b.socket.disconnect();
    expect(await drained).toBe(true);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(server.sfu.closed).toBe(true);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    await expect(fetch(`${server.metricsUrl!}/healthz`)).rejects.toThrow();
    await waitFor(() => !late.connected, 5000, 'late client disconnected');
    a.socket.disconnect();
  });

  it('rooms that do not empty: the drain closes them at the deadline', async ({ startServer }) => {
    const server = await startServer({ workers: 1 });
    const a = await joinWithTransports(server.url, newRoomId(), newToken());
    const gone = new Promise<void>((resolve) => a.socket.once('disconnect', () => resolve()));
    const t0 = Date.now();
    expect(await server.drain(400)).toBe(false);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(5000);
    expect(server.sfu.closed).toBe(true);
    await gone;
    // Idempotent: a second drain (a second SIGTERM path) is the same promise.
    expect(await server.drain(10)).toBe(false);
  });

  it('with no room at all the drain closes at once', async ({ startServer }) => {
    const server = await startServer({ workers: 1 });
    const t0 = Date.now();
    expect(await server.drain(30_000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(server.sfu.closed).toBe(true);
  });
});
