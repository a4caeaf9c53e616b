/**
 * Cluster mode's Redis connections (ioredis 5.9). Only imported when REDIS_URL is set: main.ts loads the cluster
 * modules with a dynamic import, so a single-node `npm start` never loads ioredis nor opens a connection.
 *
 * Every client made here:
 * - connects at once (`lazyConnect: false`) and reconnects forever, with a backoff doubling from 50 ms to at most
 *   `maxBackoffMs` (default 1 s: after a Redis restart every node is back within about a second, well inside the
 *   directory's one-lease hold, see directory.ts);
 * - keeps the offline queue on and never gives a command up (`maxRetriesPerRequest: null`): a command sent while
 *   Redis restarts runs once it is back (delayed, not lost). Callers that must not wait that long bound the wait
 *   themselves (the directory's `commandTimeoutMs`);
 * - names itself (`CLIENT SETNAME sealed-meet:<node>:<role>`, seen in `CLIENT LIST`);
 * - logs its errors through the Logger: the error's first line only, at most once per outage (then "reconnected"
 *   once it is ready again). ioredis's messages name host and port ("connect ECONNREFUSED 10.0.0.5:6379"), never
 *   the password; the URL itself is never logged.
 *
 * The socket.io adapter duplicates the client it is given (its stream reader and subscriber): the duplicates share
 * these options (backoff, offline queue, name) and the adapter silences their errors; the readiness of the cluster
 * is read from the clients made here.
 */
import { Redis } from 'ioredis';
import { errorMessage, type Logger } from '../../../sfu/src/Logger.ts';

export type { Redis } from 'ioredis';

export interface RedisClientOptions {
  /** REDIS_URL (redis:// or rediss://, validated by config.ts). */
  url: string;
  /** This node's id and what the connection is for: the connection name `sealed-meet:<nodeId>:<role>`. */
  nodeId: string;
  role: string;
  logger: Logger;
  /** Longest wait between reconnect attempts (default 1000 ms). */
  maxBackoffMs?: number;
  /** Per-command deadline in ms (ioredis `commandTimeout`; default none). Never on a client that runs blocking reads. */
  commandTimeoutMs?: number;
}

/** The reconnect delay before attempt `times` (1, 2, ...): 50 ms doubling, capped; never "give up". */
export function backoffMs(times: number, maxBackoffMs = 1000): number {
  return Math.min(maxBackoffMs, 50 * 2 ** Math.min(Math.max(times, 1) - 1, 16));
}

export function createRedis(opts: RedisClientOptions): Redis {
  const log = opts.logger.child('redis');
  const max = opts.maxBackoffMs ?? 1000;
  const redis = new Redis(opts.url, {
    lazyConnect: false,
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    retryStrategy: (times) => backoffMs(times, max),
    connectionName: `sealed-meet:${opts.nodeId}:${opts.role}`,
    // No CLIENT SETINFO round trip (older Redis answer it with an error).
    disableClientInfo: true,
    ...(opts.commandTimeoutMs !== undefined ? { commandTimeout: opts.commandTimeoutMs } : {}),
  });
  let failing = false;
  let wasReady = false;
  redis.on('error', (err: unknown) => {
    if (failing) return;
    failing = true;
    log.warn('redis unreachable; reconnecting', { event: opts.role, error: errorMessage(err) });
  });
  redis.on('ready', () => {
    if (failing || wasReady) log.info('redis reconnected', { event: opts.role });
    failing = false;
    wasReady = true;
  });
  redis.on('close', () => {
    if (!failing && wasReady && redis.status !== 'end') {
      failing = true;
      log.warn('redis connection lost; reconnecting', { event: opts.role });
    }
  });
  return redis;
}

/** Whether a client is connected and ready for commands now. */
export const isReady = (redis: Redis): boolean => redis.status === 'ready';

/** Resolves once `redis` is ready (at once if it is), or rejects after `timeoutMs`. */
export function whenReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (isReady(redis)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      if (err) reject(err);
      else resolve();
    };
    const onReady = (): void => done();
    const timer = setTimeout(() => done(new Error(`redis not ready within ${timeoutMs} ms`)), timeoutMs);
    redis.on('ready', onReady);
  });
}

/** QUIT (waits for the replies in flight), or a hard disconnect when Redis does not answer within `timeoutMs`. */
export async function quitRedis(redis: Redis, timeoutMs = 1000): Promise<void> {
  if (redis.status === 'end') return;
  if (!isReady(redis)) {
    redis.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    redis.quit().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        redis.disconnect();
        resolve();
      }, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}
