/**
 * A server in cluster mode (REDIS_URL) against a real redis-server: the start log line, /readyz following Redis
 * (503 `no-redis` while it is gone, ready again after its restart), the lease dropped on close; and a server without
 * REDIS_URL never loads ioredis.
 */
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../sfu/src/config.ts';
import { nodeKey } from '../../signaling/src/cluster/directory.ts';
import { checkRedis } from '../../signaling/src/cluster/doctor-redis.ts';
import { backoffMs } from '../../signaling/src/cluster/redis.ts';
import { freePort } from '../infra/coturn.ts';
import { startRedis, type TestRedis } from '../infra/redis.ts';
import { REPO_ROOT } from '../e2e/harness.ts';
import { startTestServer, waitFor, type TestServer } from './helpers.ts';

const readyz = async (server: TestServer): Promise<[number, string]> => {
  const res = await fetch(`${server.url}/readyz`);
  return [res.status, await res.text()];
};

const redisUp = async (server: TestServer): Promise<string | undefined> =>
  /^sealed_meet_cluster_redis_up (\d)$/m.exec(await (await fetch(`${server.metricsUrl}/metrics`)).text())?.[1];

describe('cluster mode of one server (real redis-server)', () => {
  let redis: TestRedis;
  let server: TestServer | undefined;

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  it('starts with its node id, is not ready (and redis_up 0) while Redis is gone, ready again after a restart; close drops its lease', async () => {
    server = await startTestServer({ redisUrl: redis.url, nodeId: 'node-x', clusterLease: 2, metricsListen: '127.0.0.1:0' });
    expect(server.cluster?.nodeId).toBe('node-x');
    const started = server.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'cluster mode on: node node-x');
    expect(started).toMatchObject({ level: 'info', ms: 2000 });
    expect(server.logs.join('\n')).not.toContain(redis.url);
    expect(await readyz(server)).toEqual([200, '{"status":"ready"}']);
    expect(await redisUp(server)).toBe('1');
    const probe = new Redis(redis.url, { maxRetriesPerRequest: null });
    probe.on('error', () => undefined);
    expect(await probe.exists(nodeKey('node-x'))).toBe(1);

    await redis.kill();
    await waitFor(async () => (await readyz(server!))[0] === 503, 3000, '/readyz 503');
    expect(await readyz(server)).toEqual([503, '{"status":"no-redis"}']);
    expect(await redisUp(server)).toBe('0');
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    await redis.restart();
    await waitFor(async () => (await readyz(server!))[0] === 200, 5000, '/readyz 200 again');
    expect(await redisUp(server)).toBe('1');
    // Re-registered after the restart (empty data).
    await waitFor(async () => (await probe.exists(nodeKey('node-x'))) === 1, 3000, 'lease re-registered');

    await server.close();
    server = undefined;
    expect(await probe.exists(nodeKey('node-x'))).toBe(0);
    await probe.quit();
  });

  it('doctor: a reachable Redis is ok with its version; an unreachable one FAILs naming host:port, never the password', async () => {
    expect(await checkRedis(resolveConfig({}), {})).toEqual([{ check: 'cluster (Redis)', level: 'ok', message: 'REDIS_URL unset: a single node, no Redis' }]);
    const up = await checkRedis(resolveConfig({ redisUrl: redis.url }), { NODE_ID: 'n1' });
    expect(up).toEqual([{ check: 'cluster (Redis)', level: 'ok', message: `127.0.0.1:${redis.port} answers PONG (Redis 7.0.15), node lease 5 s` }]);
    const closed = await freePort();
    const down = await checkRedis(resolveConfig({ redisUrl: `redis://:hunter2-secret@127.0.0.1:${closed}` }), {}, 1000);
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({ level: 'fail', message: expect.stringContaining(`127.0.0.1:${closed} (REDIS_URL) does not answer`) });
    expect(JSON.stringify(down)).not.toContain('hunter2');
  });

  it('reconnect backoff: 50 ms doubling, capped at 1 s, a number for every attempt (never gives up)', () => {
    expect([1, 2, 3, 4, 5, 6].map((t) => backoffMs(t))).toEqual([50, 100, 200, 400, 800, 1000]);
    expect(backoffMs(10_000)).toBe(1000);
    expect(backoffMs(3, 150)).toBe(150);
  });

  it('without REDIS_URL nothing of ioredis is loaded', () => {
    const script = `
      import { createRequire } from 'node:module';
      import { startServer } from './signaling/src/main.ts';
      const s = await startServer({ port: 0, workers: 1, rtcPort: 0, logLevel: 'silent' });
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/ioredis/'));
      await s.close();
      console.log(JSON.stringify({ cluster: s.cluster ?? null, loaded: loaded.length }));
    `;
    const out = execFileSync('bash', ['infra/node.sh', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ cluster: null, loaded: 0 });
  });
});
