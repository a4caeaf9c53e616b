/**
 * The cluster's room directory (signaling/src/cluster/directory.ts) against a real redis-server (test/infra/redis.ts):
 * atomic claims, leases expiring on a dead node, the token hash outliving a node and a release, and a Redis restart
 * (empty data) during which no second node may claim a room whose home has not re-registered yet.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '../../sfu/src/Logger.ts';
import { nodeKey, roomKey, RoomDirectory } from '../../signaling/src/cluster/directory.ts';
import { createRedis, quitRedis } from '../../signaling/src/cluster/redis.ts';
import { startRedis, type TestRedis } from '../infra/redis.ts';
import { newRoomId as randomRoomId, newToken, sleep, waitFor } from './helpers.ts';

const LEASE = 1500;
const GRACE = 3000;
const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
const roomIds: string[] = [];
const newRoomId = (): string => {
  const id = randomRoomId();
  roomIds.push(id);
  return id;
};

describe('RoomDirectory (real redis-server)', () => {
  let redis: TestRedis;
  const logs: string[] = [];
  const logger = new Logger('debug', (l) => logs.push(l));
  const clients: Redis[] = [];
  const dirs: RoomDirectory[] = [];

  const client = (opts: { fixedRetryMs?: number } = {}): Redis => {
    const c =
      opts.fixedRetryMs === undefined
        ? createRedis({ url: redis.url, nodeId: 't', role: 'test', logger, commandTimeoutMs: 2000 })
        : new Redis(redis.url, { maxRetriesPerRequest: null, retryStrategy: () => opts.fixedRetryMs, commandTimeout: 2000 });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const directory = async (nodeId: string, c: Redis = client()): Promise<RoomDirectory> => {
    const d = await RoomDirectory.start({ redis: c, nodeId, leaseMs: LEASE, graceMs: GRACE, logger });
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => d.close()));
    await Promise.all(clients.splice(0).map((c) => quitRedis(c)));
  });
  afterAll(async () => {
    await redis?.stop();
    // Nothing names a room: no room id in any log line.
    const text = logs.join('\n');
    expect(roomIds.length).toBeGreaterThan(0);
    for (const id of roomIds) expect(text).not.toContain(id);
  });

  it('a fresh Redis holds claims for one lease; then two nodes racing for rooms: exactly one home each, and the token hash is shared', async () => {
    await redis.restart();
    const [a, b] = [await directory('node-a'), await directory('node-b')];
    const t0 = Date.now();
    const first = await a.locate(newRoomId());
    expect(first.home).toBe('node-a');
    // The epoch was born when node-a started: its first claim waited (most of) a lease.
    expect(Date.now() - t0).toBeGreaterThan(LEASE - 400);

    const rooms = Array.from({ length: 20 }, () => newRoomId());
    const answers = await Promise.all(rooms.flatMap((r) => [a.locate(r), b.locate(r)]));
    const homes = new Set<string>();
    for (let i = 0; i < rooms.length; i++) {
      const [fromA, fromB] = [answers[2 * i]!, answers[2 * i + 1]!];
      expect(fromA.home).toBe(fromB.home);
      expect(['node-a', 'node-b']).toContain(fromA.home);
      expect(fromA.tokenHash).toBeUndefined();
      homes.add(fromA.home);
    }
    // A second look gives the same homes (no re-claim).
    for (const [i, r] of rooms.entries()) expect((await b.locate(r)).home).toBe(answers[2 * i]!.home);

    const token = sha(newToken());
    const owner = answers[0]!.home === 'node-a' ? a : b;
    await owner.hosted(rooms[0]!, token);
    for (const d of [a, b]) expect(await d.locate(rooms[0]!)).toEqual({ home: owner.nodeId, tokenHash: token });
    // hosted() keeps a stored token hash: the directory's answer does not change.
    await owner.hosted(rooms[0]!, sha('another token'));
    expect((await a.locate(rooms[0]!)).tokenHash).toEqual(token);
    expect(await a.isAlive('node-b')).toBe(true);
    expect(await a.isAlive('node-z')).toBe(false);

    // Nothing in Redis names the room: keys are hashes, values are node ids and token hashes.
    const probe = new Redis(redis.url);
    const keys = await probe.keys('*');
    const dump = JSON.stringify([keys, await Promise.all(keys.filter((k) => k.startsWith('sm:room:')).map((k) => probe.hgetall(k)))]);
    await probe.quit();
    expect(keys).toContain(roomKey(rooms[0]!));
    for (const r of rooms) expect(dump).not.toContain(r);
  });

  it('a node that stops renewing: onNodeLost fires within about a lease, its room moves to the claimer with the token hash kept', async () => {
    const deadClient = client();
    const [a, b] = [await directory('node-a', deadClient), await directory('node-b')];
    const roomId = newRoomId();
    await sleep(LEASE); // past the hold of the epoch this file's first test made (a no-op if it is older)
    const token = sha(newToken());
    const claimedBy = await a.locate(roomId);
    expect(claimedBy.home).toBe('node-a');
    await a.hosted(roomId, token);
    expect(await b.locate(roomId)).toEqual({ home: 'node-a', tokenHash: token });

    const lost: { id: string; at: number }[] = [];
    b.onNodeLost((id) => lost.push({ id, at: Date.now() }));
    // A crash: node-a's connection is gone, nothing is released, nothing renewed.
    deadClient.disconnect();
    const died = Date.now();
    await waitFor(() => lost.length > 0, LEASE * 3, 'node-a reported lost');
    expect(lost.map((l) => l.id)).toEqual(['node-a']);
    expect(lost[0]!.at - died).toBeLessThan(LEASE + LEASE / 3 + 500);
    expect(await b.isAlive('node-a')).toBe(false);
    // The room moves to the next locate()r, and the token hash came along.
    expect(await b.locate(roomId)).toEqual({ home: 'node-b', tokenHash: token });
    await sleep(LEASE);
    expect(lost).toHaveLength(1);
  });

  it('a node restarted under the same NODE_ID within its lease is reported lost (its rooms are gone), once', async () => {
    const first = client();
    await directory('node-a', first);
    const b = await directory('node-b');
    await sleep(LEASE / 2); // b's poll has seen node-a
    const lost: string[] = [];
    b.onNodeLost((id) => lost.push(id));
    first.disconnect();
    await directory('node-a'); // the new process, at once: node-a's lease never lapses
    await waitFor(() => lost.length > 0, LEASE * 2, 'node-a reported as restarted');
    expect(await b.isAlive('node-a')).toBe(true);
    await sleep(LEASE);
    expect(lost).toEqual(['node-a']);
  });

  it('released: the token hash stays for the grace period (a re-created room keeps it), then the room is forgotten', async () => {
    const [a, b] = [await directory('node-a'), await directory('node-b')];
    await sleep(LEASE);
    const roomId = newRoomId();
    const token = sha(newToken());
    expect((await a.locate(roomId)).home).toBe('node-a');
    await a.hosted(roomId, token);
    await sleep(LEASE * 1.2); // renewed meanwhile
    await a.released(roomId);
    // Re-created on the other node: home moves, token hash kept; released again, it is kept again.
    expect(await b.locate(roomId)).toEqual({ home: 'node-b', tokenHash: token });
    await b.released(roomId);
    expect(await a.locate(roomId)).toEqual({ home: 'node-a', tokenHash: token });
    await a.released(roomId);
    // Unhosted past the grace period: gone; the next creator sets a new token hash.
    await sleep(GRACE + 300);
    expect(await b.locate(roomId)).toEqual({ home: 'node-b', tokenHash: undefined });
  });

  it('a hosted room outlives its grace period while its home renews it', async () => {
    const [a, b] = [await directory('node-a'), await directory('node-b')];
    await sleep(LEASE);
    const roomId = newRoomId();
    const token = sha(newToken());
    await a.locate(roomId);
    await a.hosted(roomId, token);
    await sleep(GRACE * 1.5);
    expect(await b.locate(roomId)).toEqual({ home: 'node-a', tokenHash: token });
  });

  it('Redis killed and restarted empty: the home re-registers its lease and rooms; no other node claims them meanwhile; no node reported lost', async () => {
    // node-a (the home) reconnects a second after the restart; node-b and node-c within ~50 ms.
    const a = await directory('node-a', client({ fixedRetryMs: 1000 }));
    const b = await directory('node-b', client({ fixedRetryMs: 50 }));
    const c = await directory('node-c', client({ fixedRetryMs: 50 }));
    await sleep(LEASE);
    const roomId = newRoomId();
    const token = sha(newToken());
    expect((await a.locate(roomId)).home).toBe('node-a');
    await a.hosted(roomId, token);
    expect((await b.locate(roomId)).home).toBe('node-a');
    const lost: string[] = [];
    for (const d of [b, c]) d.onNodeLost((id) => lost.push(id));

    await redis.kill();
    await sleep(300);
    await redis.restart();
    // node-b is back at once, and asks before node-a re-registered: it must wait, not claim.
    const bClient = clients[1]!;
    await waitFor(() => bClient.status === 'ready', 3000, 'node-b reconnected');
    const probe = new Redis(redis.url);
    expect(await probe.exists(roomKey(roomId), nodeKey('node-a'))).toBe(0);
    const fresh = newRoomId();
    const [fromB, fromC, freshB, freshC] = await Promise.all([b.locate(roomId), c.locate(roomId), b.locate(fresh), c.locate(fresh)]);
    expect(fromB).toEqual({ home: 'node-a', tokenHash: token });
    expect(fromC).toEqual({ home: 'node-a', tokenHash: token });
    // A room nobody hosted before the restart: one claimer wins after the hold.
    expect(freshB.home).toBe(freshC.home);
    // The entries are back (re-registered by their home), the lease too.
    expect(await probe.exists(roomKey(roomId), nodeKey('node-a'))).toBe(2);
    expect(await probe.hget(roomKey(roomId), 'tok')).toBe(token.toString('hex'));
    await probe.quit();
    await sleep(LEASE);
    expect(lost).toEqual([]);
    expect(logs.some((l) => l.includes('redis lost its data'))).toBe(true);
  });

  it('close(): rooms released, lease dropped; others see the node gone at the next poll', async () => {
    const [a, b] = [await directory('node-a'), await directory('node-b')];
    await sleep(LEASE);
    const roomId = newRoomId();
    const token = sha(randomBytes(32).toString('base64url'));
    await a.locate(roomId);
    await a.hosted(roomId, token);
    const lost: string[] = [];
    b.onNodeLost((id) => lost.push(id));
    await a.close();
    await waitFor(() => lost.includes('node-a'), LEASE, 'node-a reported gone');
    expect(await b.locate(roomId)).toEqual({ home: 'node-b', tokenHash: token });
    await expect(a.locate(roomId)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
