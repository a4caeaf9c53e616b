/**
 * Cluster mode's start and stop for one node (main.ts imports this module only when REDIS_URL is set, so a
 * single-node server never loads ioredis).
 *
 * Two Redis connections of our own, each with its own role:
 * - `data` (directory + address counts): short commands only, each bounded by a 2 s command timeout;
 * - `bus` (the node link, signaling/src/cluster/link.ts): writes its XADDs and is duplicated once by the link for the
 *   blocking XREAD reader, so it has no command timeout (a blocked XREAD would time out).
 *
 * No socket.io adapter: the node link carries every message between nodes, in order, itself (see link.ts for why
 * the redis-streams adapter's two paths are unordered). An adapter would also turn this node's `io.emit('draining')`
 * and `io.disconnectSockets()` (server.ts: drain and close) into cluster-wide broadcasts: one node's restart would
 * tell every member of the cluster to reconnect.
 *
 * Readiness (/readyz): both connections ready. A node that cannot reach Redis answers 503 `no-redis`, so a load
 * balancer sends new sockets elsewhere; the calls it hosts go on (media needs no Redis).
 */
import type { Config } from '../../../sfu/src/config.ts';
import type { Logger } from '../../../sfu/src/Logger.ts';
import { ClusterAddressCounts } from './address-counts.ts';
import { RoomDirectory } from './directory.ts';
import { createRedis, isReady, quitRedis, type Redis } from './redis.ts';

export interface ClusterNode {
  nodeId: string;
  directory: RoomDirectory;
  addressCounts: ClusterAddressCounts;
  /** The node link's connection (server.ts `cluster.redis`). */
  bus: Redis;
  /** Both Redis connections are ready. */
  reachable(): boolean;
  /** Directory closed (rooms released, lease dropped), counts withdrawn, connections quit. Idempotent. */
  close(): Promise<void>;
}

export async function startClusterNode(config: Pick<Config, 'redisUrl' | 'nodeId' | 'clusterLease'>, logger: Logger): Promise<ClusterNode> {
  if (!config.redisUrl) throw new Error('cluster mode needs REDIS_URL');
  const leaseMs = config.clusterLease * 1000;
  const base = { url: config.redisUrl, nodeId: config.nodeId, logger };
  const data = createRedis({ ...base, role: 'data', commandTimeoutMs: 2000 });
  const bus = createRedis({ ...base, role: 'bus' });
  let directory: RoomDirectory | undefined;
  try {
    directory = await RoomDirectory.start({ redis: data, nodeId: config.nodeId, leaseMs, logger });
    const addressCounts = await ClusterAddressCounts.start({ redis: data, nodeId: config.nodeId, leaseMs, logger });
    let closing: Promise<void> | undefined;
    const dir = directory;
    return {
      nodeId: config.nodeId,
      directory: dir,
      addressCounts,
      bus,
      reachable: () => isReady(data) && isReady(bus),
      close: () =>
        (closing ??= (async () => {
          await Promise.all([dir.close(), addressCounts.close()]);
          await Promise.all([quitRedis(data), quitRedis(bus)]);
        })()),
    };
  } catch (err) {
    await directory?.close().catch(() => undefined);
    data.disconnect();
    bus.disconnect();
    throw err;
  }
}
