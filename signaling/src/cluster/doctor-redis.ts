/**
 * `npm run doctor`'s cluster check: with REDIS_URL set, the Redis is reached (PING), its version and mode read
 * (INFO), and what would go wrong said in plain words. Never prints the URL (it may hold a password): host and port
 * only. ioredis is loaded only when REDIS_URL is set.
 */
import type { Config } from '../../../sfu/src/config.ts';
import { errorMessage } from '../../../sfu/src/Logger.ts';

export interface RedisFinding {
  check: string;
  level: 'ok' | 'warn' | 'fail';
  message: string;
  fix?: string;
}

const CHECK = 'cluster (Redis)';

/** host:port of a Redis URL, for messages (no user, password or database). */
export function redisEndpoint(url: string): string {
  const u = new URL(url);
  return `${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${u.port || '6379'}`;
}

export async function checkRedis(config: Pick<Config, 'redisUrl' | 'nodeId' | 'clusterLease'>, env: NodeJS.ProcessEnv, timeoutMs = 3000): Promise<RedisFinding[]> {
  if (!config.redisUrl) return [{ check: CHECK, level: 'ok', message: 'REDIS_URL unset: a single node, no Redis' }];
  const where = redisEndpoint(config.redisUrl);
  const { Redis } = await import('ioredis');
  const redis = new Redis(config.redisUrl, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: timeoutMs, commandTimeout: timeoutMs, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const pong = await redis.ping();
    const info = await redis.info();
    const field = (name: string): string | undefined => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
    const version = field('redis_version') ?? 'unknown';
    const out: RedisFinding[] = [];
    if (field('cluster_enabled') === '1') {
      out.push({ check: CHECK, level: 'fail', message: `${where} is a Redis Cluster node`, fix: 'use a standalone Redis (or a primary with replicas): the directory scripts touch keys Redis Cluster would refuse' });
    }
    const [major = 0, minor = 0] = version.split('.').map(Number);
    if (major < 6 || (major === 6 && minor < 2)) {
      out.push({ check: CHECK, level: 'warn', message: `${where} runs Redis ${version}`, fix: 'use Redis 6.2 or later (tested with Debian\'s 7.0)' });
    }
    if (!env['NODE_ID']) {
      out.push({ check: 'cluster node id', level: 'ok', message: 'NODE_ID unset: a random id per process (set one to recognise the node in CLIENT LIST)' });
    }
    out.unshift({ check: CHECK, level: 'ok', message: `${where} answers ${pong} (Redis ${version}), node lease ${config.clusterLease} s` });
    return out;
  } catch (err) {
    return [
      {
        check: CHECK,
        level: 'fail',
        message: `${where} (REDIS_URL) does not answer: ${errorMessage(err)}`,
        fix: 'start Redis (apt-get install redis-server), or check the address, password (AUTH) and TLS (rediss://) in REDIS_URL',
      },
    ];
  } finally {
    redis.disconnect();
  }
}
