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
  const sfu = await Sfu.create(config, { logger, ...(opts.tap ? { tap: opts.tap } : {}) });
  const capture = opts.capture ? new MessageCapture(opts.capture === true ? {} : opts.capture) : undefined;

  const handler = createStaticHandler(config.clientDir);
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
    addressLimits: { maxSockets: config.maxSocketsPerAddress, maxRooms: config.maxRoomsPerAddress, trustProxy: config.trustProxy },
    relayBudget: { bytesPerSec: config.relayBytesPerSec, burstBytes: config.relayBurstBytes },
    hideVoiceActivity: config.hideVoiceActivity,
    ...(capture ? { capture } : {}),
  });

  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(config.port, config.bindHost, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await signaling.close();
    sfu.close();
    throw error;
  }
  const port = (httpServer.address() as AddressInfo).port;
  const urlHost = config.host.toLowerCase() === 'localhost' ? 'localhost' : config.bindHost.includes(':') ? `[${config.bindHost}]` : config.bindHost;
  const url = `${secure ? 'https' : 'http'}://${urlHost}:${port}`;
  logger.info('listening', { url, workers: sfu.pool.size });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await signaling.close();
      sfu.close();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
      logger.info('stopped');
    })();
    return closing;
  };

  const started: StartedServer = { url, port, config, sfu, io: signaling.io, httpServer, close };
  if (sfu.tap) started.tap = sfu.tap;
  if (capture) started.capture = capture;
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
  const stop = (signal: string): void => {
    if (stopping) {
      process.stderr.write(`sealed-meet: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  cli().catch((error: unknown) => {
    process.stderr.write(`sealed-meet: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
