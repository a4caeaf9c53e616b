/**
 * Per-address quotas across two nodes (limits.ts `cluster` option with signaling/src/cluster/address-counts.ts)
 * against a real redis-server: each node's checks add the other's published counts; a dead node's counts expire with
 * its lease; Redis holds hashes of addresses, never an address; after a Redis restart the cluster keeps its hash key.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '../../sfu/src/Logger.ts';
import { ADDR_KEY, ClusterAddressCounts } from '../../signaling/src/cluster/address-counts.ts';
import { RoomDirectory } from '../../signaling/src/cluster/directory.ts';
import { createRedis, quitRedis } from '../../signaling/src/cluster/redis.ts';
import { AddressLimits } from '../../signaling/src/limits.ts';
import { startRedis, type TestRedis } from '../infra/redis.ts';
import { waitFor } from './helpers.ts';

const LEASE = 1500;
const ADDR = '203.0.113.7';
const OTHER = '198.51.100.20';

describe('AddressLimits across two nodes (real redis-server)', () => {
  let redis: TestRedis;
  const logger = new Logger('silent');
  const clients: Redis[] = [];
  const closers: (() => Promise<void>)[] = [];

  const node = async (nodeId: string): Promise<{ limits: AddressLimits; counts: ClusterAddressCounts; client: Redis }> => {
    const client = createRedis({ url: redis.url, nodeId, role: 'test', logger, commandTimeoutMs: 2000 });
    clients.push(client);
    const dir = await RoomDirectory.start({ redis: client, nodeId, leaseMs: LEASE, logger });
    const counts = await ClusterAddressCounts.start({ redis: client, nodeId, leaseMs: LEASE, logger });
    closers.push(() => counts.close(), () => dir.close());
    return { limits: new AddressLimits({ maxSockets: 3, maxRooms: 2, trustProxy: false, cluster: counts }), counts, client };
  };
  /** Both publish, then both read: each sees the other's current counts. */
  const sync = async (...counts: ClusterAddressCounts[]): Promise<void> => {
    for (let i = 0; i < 2; i++) for (const c of counts) await c.refresh();
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await Promise.all(clients.map((c) => quitRedis(c)));
    await redis?.stop();
  });

  it('sockets and rooms of one address count over both nodes; other addresses are not affected; releases count too', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    const releases = [a.limits.connect(ADDR), a.limits.connect(ADDR), b.limits.connect(ADDR)];
    expect(releases.every((r) => r !== null)).toBe(true);
    // Before the nodes exchanged counts, each one alone is under the limit.
    expect(a.limits.canConnect(ADDR)).toBe(true);
    await sync(a.counts, b.counts);
    expect(a.limits.canConnect(ADDR)).toBe(false);
    expect(b.limits.canConnect(ADDR)).toBe(false);
    expect(b.limits.connect(ADDR)).toBeNull();
    expect(a.limits.canConnect(OTHER)).toBe(true);

    const inRoom = [a.limits.enterRoom(ADDR, 'room-1'), b.limits.enterRoom(ADDR, 'room-2')];
    expect(inRoom.every((r) => r !== null)).toBe(true);
    await sync(a.counts, b.counts);
    expect(a.limits.enterRoom(ADDR, 'room-3')).toBeNull();
    expect(b.limits.enterRoom(ADDR, 'room-3')).toBeNull();
    // A room this node already counts for the address is no new room.
    const again = a.limits.enterRoom(ADDR, 'room-1');
    expect(again).not.toBeNull();
    again!();
    expect(a.limits.enterRoom(OTHER, 'room-3')).not.toBeNull();

    // B's socket and room go: A may take one more of each, once it has read B's new counts (the background round).
    releases[2]!();
    inRoom[1]!();
    await waitFor(() => a.limits.canConnect(ADDR), 4000, 'A sees B released its socket');
    expect(a.limits.enterRoom(ADDR, 'room-3')).not.toBeNull();

    // Redis holds hashes of addresses and counts, no address.
    const probe = new Redis(redis.url);
    const keys = await probe.keys('*');
    const values = await Promise.all(keys.filter((k) => k.startsWith('sm:addr:')).map((k) => probe.hgetall(k)));
    await probe.quit();
    expect(keys).toEqual(expect.arrayContaining(['sm:addr:node-a', ADDR_KEY]));
    const dump = JSON.stringify([keys, values]);
    expect(values.flatMap((v) => Object.keys(v))).toContain(a.counts.hashOf(ADDR));
    for (const ip of [ADDR, OTHER, '203.0.113', '7f000001']) expect(dump).not.toContain(ip);
  });

  it("a crashed node's counts expire with its lease; after a Redis restart the cluster keeps its hash key", async () => {
    const c = await node('node-c');
    const d = await node('node-d');
    for (let i = 0; i < 3; i++) expect(d.limits.connect(OTHER)).not.toBeNull();
    await sync(c.counts, d.counts);
    expect(c.limits.canConnect(OTHER)).toBe(false);
    d.client.disconnect(); // node-d crashes: its published counts stay until its lease runs out
    const crashed = Date.now();
    await waitFor(() => c.limits.canConnect(OTHER), LEASE * 4, 'node-d counts expired');
    expect(Date.now() - crashed).toBeGreaterThan(LEASE / 2);

    const probe = new Redis(redis.url);
    const key = await probe.get(ADDR_KEY);
    const hash = c.counts.hashOf(OTHER);
    await redis.restart();
    await waitFor(() => c.client.status === 'ready', 5000, 'node-c reconnected');
    await c.counts.refresh();
    expect(await probe.get(ADDR_KEY)).toBe(key);
    expect(c.counts.hashOf(OTHER)).toBe(hash);
    await probe.quit();
  });
});
