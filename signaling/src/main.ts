/**
 * One process: HTTP(S) server (static client + security headers) + socket.io signaling + mediasoup SFU.
 *
 *   node --import tsx signaling/src/main.ts        (configuration from the environment, see sfu/src/config.ts)
 *
 * Tests and the e2e suite start it in-process: `await startServer({ port: 0, workers: 1 })`.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, resolveConfig, type Config, type ConfigInput } from '../../sfu/src/config.ts';
import { Logger, type LogSink } from '../../sfu/src/Logger.ts';
import type { MediaTap, MediaTapOptions } from '../../sfu/src/MediaTap.ts';
import { Sfu } from '../../sfu/src/Sfu.ts';
import { MessageCapture, type MessageCaptureOptions } from './capture.ts';
import type { ClusterNode } from './cluster/node.ts';
import { serveProbe, waitForRoomsEmpty, type ReadinessSource } from './health.ts';
import { Metrics, startMetricsServer, type MetricsServer } from './metrics.ts';
import { createSignalingServer, type SignalingIo, type SignalingOptions } from './server.ts';
import { createStaticHandler } from './static.ts';
import { loadTls } from './tls.ts';
import { TurnIssuer } from './turn.ts';

export interface StartedServer {
  url: string;
  port: number;
  config: Config;
  sfu: Sfu;
  io: SignalingIo;
  httpServer: http.Server | https.Server;
  /** TEST-ONLY media tap (`startServer(config, { tap: true })`); undefined unless turned on. */
  tap?: MediaTap;
  /** TEST-ONLY socket.io message capture (`startServer(config, { capture: true })`); undefined unless turned on. */
  capture?: MessageCapture;
  /** The metrics listener's base URL (METRICS_LISTEN); undefined when metrics are off. */
  metricsUrl?: string;
  /** Cluster mode (REDIS_URL): this node's directory, address counts and Redis connections; undefined otherwise. */
  cluster?: ClusterNode;
  /** True once `drain()` was called: /readyz is 503 and joins are refused with DRAINING. */
  readonly draining: boolean;
  /**
   * Graceful restart (SIGTERM): refuse new joins, tell every client (`draining`), wait until every room is empty or
   * `timeoutMs` (default DRAIN_TIMEOUT) passed, then `close()`. Resolves true if the rooms emptied in time. Idempotent.
   */
  drain(timeoutMs?: number): Promise<boolean>;
  /** Graceful, idempotent shutdown: sockets, rooms, workers, HTTP server. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Where log lines go (default stdout). */
  logSink?: LogSink;
  /** Extra signaling options (e.g. a smaller maxPayloadBytes in tests). */
  signaling?: Omit<SignalingOptions, 'logger' | 'turn' | 'rateLimit' | 'addressLimits' | 'relayBudget' | 'hideVoiceActivity'>;
  /** Directory for the generated self-signed certificate (default .cache/tls). */
  tlsCacheDir?: string;
  /**
   * TEST-ONLY: record every frame the SFU forwards (`server.tap`, see sfu/src/MediaTap.ts). Off by
   * default; the CLI never sets it and no environment variable or config field maps to it.
   */
  tap?: boolean | MediaTapOptions;
  /**
   * TEST-ONLY: record every socket.io message in and out (`server.capture`, see capture.ts). Off by
   * default; the CLI never sets it and no environment variable or config field maps to it.
   */
  capture?: boolean | MessageCaptureOptions;
}

export async function startServer(input: ConfigInput | Config = {}, opts: StartOptions = {}): Promise<StartedServer> {
  const config = resolveConfig(input);
  const logger = new Logger(config.logLevel, opts.logSink);
  // Cluster mode only: loaded on demand, so without REDIS_URL ioredis is never imported and nothing connects.
  const cluster = config.redisUrl ? await (await import('./cluster/node.ts')).startClusterNode(config, logger) : undefined;
  if (cluster) logger.info(`cluster mode on: node ${cluster.nodeId}`, { ms: config.clusterLease * 1000 });
  let sfu: Sfu;
  try {
    sfu = await Sfu.create(config, { logger, ...(opts.tap ? { tap: opts.tap } : {}) });
  } catch (error) {
    await cluster?.close();
    throw error;
  }
  const capture = opts.capture ? new MessageCapture(opts.capture === true ? {} : opts.capture) : undefined;

  // Read at request time (the signaling server is made below).
  const readiness: ReadinessSource = {
    draining: () => signaling.draining,
    liveWorkers: () => (sfu.closed ? 0 : sfu.pool.size),
    ...(cluster ? { redisReachable: () => cluster.reachable() } : {}),
  };
  const metrics = config.metricsListen ? new Metrics(sfu, readiness) : undefined;
  const files = createStaticHandler(config.clientDir);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!serveProbe(req, res, readiness)) files(req, res);
  };
  let httpServer: http.Server | https.Server;
  let secure = false;
  if (config.isLocal && !config.tlsCert) {
    httpServer = http.createServer(handler);
  } else {
    const tls = loadTls({
      tlsCert: config.tlsCert,
      tlsKey: config.tlsKey,
      host: config.host,
      announcedIp: config.announcedIp,
      ...(opts.tlsCacheDir ? { cacheDir: opts.tlsCacheDir } : {}),
    });
    if (tls.selfSigned) {
      const bar = '!'.repeat(78);
      process.stderr.write(
        `${bar}\n!! WARNING: no TLS_CERT/TLS_KEY given; serving HTTPS with a SELF-SIGNED certificate\n` +
          `!!   ${tls.certPath}\n!! Browsers will warn. Use a real certificate for anything but testing.\n${bar}\n`,
      );
    }
    httpServer = https.createServer({ cert: tls.cert, key: tls.key }, handler);
    secure = true;
  }
  httpServer.headersTimeout = 20_000;
  httpServer.requestTimeout = 30_000;

  const signaling = createSignalingServer(httpServer, sfu, {
    ...opts.signaling,
    logger,
    turn: new TurnIssuer(config),
    allowedOrigins: config.allowedOrigins,
    rateLimit: { perSec: config.rateLimitPerSec, burst: config.rateLimitBurst },
    addressLimits: {
      maxSockets: config.maxSocketsPerAddress,
      maxRooms: config.maxRoomsPerAddress,
      trustProxy: config.trustProxy,
      ...(cluster ? { cluster: cluster.addressCounts } : {}),
    },
    relayBudget: { bytesPerSec: config.relayBytesPerSec, burstBytes: config.relayBurstBytes },
    hideVoiceActivity: config.hideVoiceActivity,
    ...(capture ? { capture } : {}),
    ...(metrics ? { metrics } : {}),
    ...(cluster ? { cluster: { directory: cluster.directory, redis: cluster.bus } } : {}),
  });

  let metricsServer: MetricsServer | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(config.port, config.bindHost, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
    if (metrics && config.metricsListen) metricsServer = await startMetricsServer(config.metricsListen, metrics, readiness, logger);
  } catch (error) {
    await signaling.close();
    sfu.close();
    await cluster?.close();
    if (httpServer.listening) httpServer.close();
    throw error;
  }
  const port = (httpServer.address() as AddressInfo).port;
  const urlHost = config.host.toLowerCase() === 'localhost' ? 'localhost' : config.bindHost.includes(':') ? `[${config.bindHost}]` : config.bindHost;
  const url = `${secure ? 'https' : 'http'}://${urlHost}:${port}`;
  logger.info('listening', { url, workers: sfu.pool.size });
  if (metricsServer) logger.info('metrics listening', { url: `${metricsServer.url}/metrics` });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await signaling.close();
      sfu.close();
      // After the rooms closed: the directory releases what is left and drops this node's lease, then Redis quits.
      await cluster?.close();
      await Promise.all([
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        }),
        metricsServer?.close(),
      ]);
      logger.info('stopped');
    })();
    return closing;
  };

  let draining: Promise<boolean> | undefined;
  const drain = (timeoutMs = config.drainTimeout * 1000): Promise<boolean> => {
    draining ??= (async () => {
      signaling.drain(timeoutMs);
      const empty = await waitForRoomsEmpty(sfu, timeoutMs);
      logger.info(empty ? 'drained: every room is empty' : 'drain deadline reached; closing the rooms left', { rooms: sfu.rooms().length });
      await close();
      return empty;
    })();
    return draining;
  };

  const started: StartedServer = {
    url,
    port,
    config,
    sfu,
    io: signaling.io,
    httpServer,
    get draining() {
      return signaling.draining;
    },
    drain,
    close,
  };
  if (metricsServer) started.metricsUrl = metricsServer.url;
  if (sfu.tap) started.tap = sfu.tap;
  if (capture) started.capture = capture;
  if (cluster) started.cluster = cluster;
  return started;
}

async function cli(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`sealed-meet: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const server = await startServer(config);
  process.stdout.write(`\n  sealed-meet is running at ${server.url}\n\n`);
  let stopping = false;
  // SIGTERM/SIGINT: drain (no new joins, clients told, calls go on) until the rooms are empty or DRAIN_TIMEOUT, then
  // close and exit 0. A second signal exits at once.
  const stop = (signal: string): void => {
    if (stopping) {
      process.stderr.write(`sealed-meet: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`sealed-meet: ${signal}: draining for up to ${config.drainTimeout} s (send it again to exit now)\n`);
    const force = setTimeout(() => process.exit(1), config.drainTimeout * 1000 + 10_000);
    force.unref();
    server.drain().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  const onSignal = { SIGINT: () => stop('SIGINT'), SIGTERM: () => stop('SIGTERM') } as const;
  // mediasoup 3.27 closes every worker on the process's SIGINT/SIGTERM (Worker.ts: `process.once(signal, onSignal)`
  // per worker), which would cut every call the moment a drain starts. The CLI owns these two signals: any other
  // listener is removed, now and whenever one is added (each (re)spawned worker adds its own). The drain closes the
  // workers itself at its end.
  const owned = (event: string | symbol): event is keyof typeof onSignal => event === 'SIGINT' || event === 'SIGTERM';
  process.on('newListener', (event: string | symbol, listener: (...args: unknown[]) => void) => {
    if (owned(event) && listener !== onSignal[event]) queueMicrotask(() => process.removeListener(event, listener));
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    for (const listener of process.listeners(signal)) process.removeListener(signal, listener);
    process.on(signal, onSignal[signal]);
  }
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  cli().catch((error: unknown) => {
    process.stderr.write(`sealed-meet: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
