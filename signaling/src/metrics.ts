/**
 * Prometheus metrics (prom-client 15), on their own listener (METRICS_LISTEN), never on the public port, and off
 * unless configured. One Registry per server (not prom-client's global one), so tests and embedders never share.
 *
 * What is exported, all of it aggregate:
 * - gauges read from the SFU at scrape time: rooms, peers, transports, producers, consumers, live workers;
 * - per mediasoup worker (`worker.getResourceUsage()`): CPU seconds (user / system) and peak RSS, labelled by
 *   the worker's index among the live workers (0..WORKERS-1), not by pid;
 * - counters kept by the signaling hooks: relayed messages (to one member / to the room) and bytes sent,
 *   signaling errors by code (the closed ERROR_CODES set, every code present from 0);
 * - a histogram of join latency (successful joins, handler start to answer);
 * - the drain state (0/1), and prom-client's default process metrics (CPU, memory, event loop, GC, handles).
 *
 * Privacy: no label carries a room id, peer id, producer/consumer id, IP address, user agent or anything else
 * per person or per meeting. Every label value comes from a closed set: an error code, a relay target kind, a
 * worker index, a CPU mode, a histogram bucket, or prom-client's own runtime labels (GC kind, heap space, Node
 * version). test/server/ops.test.ts checks the whole exposition against a live call.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { errorMessage, type Logger } from '../../sfu/src/Logger.ts';
import type { Sfu, SfuStats } from '../../sfu/src/Sfu.ts';
import { ERROR_CODES, type ErrorCode } from '../../sfu/src/wire.ts';
import { serveProbe, type ReadinessSource } from './health.ts';

/** The relay target kinds (`relay { to }` or to everyone else). */
export const RELAY_TARGETS = ['member', 'room'] as const;
export type RelayTarget = (typeof RELAY_TARGETS)[number];

/** What the signaling server reports; a port, so server.ts and pipeline.ts know nothing of Prometheus. */
export interface SignalingMetrics {
  /** A join succeeded after `seconds`. */
  joined(seconds: number): void;
  /** A relay was forwarded: `bytes` sent in all (blob length × recipients). */
  relayed(target: RelayTarget, bytes: number): void;
  /** A request (or an unknown event) was answered with an error. */
  failed(code: ErrorCode): void;
}

/** Join latency buckets, seconds: a join is a token check plus (for a room's first member) a router on a worker. */
const JOIN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const SFU_GAUGES: readonly [keyof SfuStats, string][] = [
  ['rooms', 'Rooms (one mediasoup router each)'],
  ['peers', 'Members joined, over all rooms'],
  ['transports', 'WebRTC transports'],
  ['producers', 'Producers (tracks sent to the SFU)'],
  ['consumers', 'Consumers (tracks forwarded by the SFU)'],
  ['workers', 'Live mediasoup workers'],
];

export class Metrics implements SignalingMetrics {
  readonly registry = new Registry();
  readonly #joins: Histogram;
  readonly #relayMessages: Counter<'target'>;
  readonly #relayBytes: Counter;
  readonly #errors: Counter<'code'>;

  constructor(sfu: Sfu, readiness: ReadinessSource) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const stats = perScrape(() => sfu.stats());
    for (const [key, help] of SFU_GAUGES) {
      new Gauge({
        name: `sealed_meet_${key}`,
        help,
        registers,
        collect() {
          this.set(stats()[key]);
        },
      });
    }
    new Gauge({
      name: 'sealed_meet_draining',
      help: '1 while the server drains for a restart (SIGTERM: no new joins), else 0',
      registers,
      collect() {
        this.set(readiness.draining() ? 1 : 0);
      },
    });
    const redisReachable = readiness.redisReachable?.bind(readiness);
    if (redisReachable) {
      new Gauge({
        name: 'sealed_meet_cluster_redis_up',
        help: 'cluster mode only: 1 while this node reaches Redis (room directory, node link), else 0 (/readyz is 503 no-redis)',
        registers,
        collect() {
          this.set(redisReachable() ? 1 : 0);
        },
      });
    }
    type WorkerUsage = { worker: string; user: number; system: number; maxRss: number };
    const workerUsage = perScrape(async (): Promise<WorkerUsage[]> => {
      const all = await Promise.all(
        sfu.pool.workers.map(async (w, i): Promise<WorkerUsage[]> => {
          try {
            const u = await w.getResourceUsage();
            // uv_getrusage: times in ms, ru_maxrss in KiB (Linux).
            return [{ worker: String(i), user: u.ru_utime / 1000, system: u.ru_stime / 1000, maxRss: u.ru_maxrss * 1024 }];
          } catch {
            return []; // it died meanwhile
          }
        }),
      );
      return all.flat();
    });
    new Counter({
      name: 'sealed_meet_worker_cpu_seconds_total',
      help: 'CPU time of each mediasoup worker (getResourceUsage), by worker index among the live workers and mode',
      labelNames: ['worker', 'mode'],
      registers,
      async collect() {
        const list = await workerUsage();
        this.reset();
        for (const u of list) {
          this.inc({ worker: u.worker, mode: 'user' }, u.user);
          this.inc({ worker: u.worker, mode: 'system' }, u.system);
        }
      },
    });
    new Gauge({
      name: 'sealed_meet_worker_max_rss_bytes',
      help: 'Peak resident memory of each mediasoup worker (getResourceUsage ru_maxrss), by worker index',
      labelNames: ['worker'],
      registers,
      async collect() {
        const list = await workerUsage();
        this.reset();
        for (const u of list) this.set({ worker: u.worker }, u.maxRss);
      },
    });
    this.#joins = new Histogram({
      name: 'sealed_meet_join_duration_seconds',
      help: 'Time to answer a successful join',
      buckets: JOIN_BUCKETS,
      registers,
    });
    this.#relayMessages = new Counter({
      name: 'sealed_meet_relay_messages_total',
      help: 'Relay messages forwarded (opaque end-to-end blobs), to one member or to the whole room',
      labelNames: ['target'],
      registers,
    });
    this.#relayBytes = new Counter({
      name: 'sealed_meet_relay_bytes_total',
      help: 'Relay bytes sent (blob length times recipients)',
      registers,
    });
    this.#errors = new Counter({
      name: 'sealed_meet_signaling_errors_total',
      help: 'Signaling requests answered with an error, by error code',
      labelNames: ['code'],
      registers,
    });
    for (const target of RELAY_TARGETS) this.#relayMessages.inc({ target }, 0);
    for (const code of ERROR_CODES) this.#errors.inc({ code }, 0);
  }

  joined(seconds: number): void {
    this.#joins.observe(seconds);
  }

  relayed(target: RelayTarget, bytes: number): void {
    this.#relayMessages.inc({ target });
    this.#relayBytes.inc(bytes);
  }

  failed(code: ErrorCode): void {
    // The label set stays closed whatever reaches here.
    this.#errors.inc({ code: (ERROR_CODES as readonly string[]).includes(code) ? code : 'SFU_ERROR' });
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * One value per scrape: prom-client calls every metric's collect() in the same synchronous pass
 * (registry.metrics() maps them, then awaits them together), so a value kept until the next microtask is shared by
 * the gauges of one scrape (one walk over the rooms, one getResourceUsage per worker) and fresh for the next.
 */
function perScrape<T>(compute: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: compute() };
      queueMicrotask(() => (cached = undefined));
    }
    return cached.value;
  };
}

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * The metrics listener (plain HTTP on METRICS_LISTEN): `GET /metrics`, `/healthz`, `/readyz`; anything else 404.
 * Meant for a loopback or private address that only the monitoring system reaches.
 */
export async function startMetricsServer(
  listen: { host: string; port: number },
  metrics: Metrics,
  readiness: ReadinessSource,
  logger: Logger,
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (serveProbe(req, res, readiness)) return;
    const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
    if ((req.url ?? '').split('?')[0] !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found');
      return;
    }
    metrics.text().then(
      (text) => {
        res.writeHead(200, { ...headers, 'Content-Type': metrics.registry.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        logger.warn('metrics collection failed', { error: errorMessage(error) });
        res.writeHead(500, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('metrics collection failed');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
