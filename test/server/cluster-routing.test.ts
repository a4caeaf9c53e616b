/**
 * Cluster routing (issue 10 "Several nodes behind one name"): two real nodes in this process (startServer, each with
 * its own Sfu and one worker) over a real redis-server (test/infra/redis.ts). A room lives on one
 * node (its home); members connected to the other node (their edge) get their requests run on the home over the node
 * link (cluster/link.ts), and everything the home sends them arrives in order.
 *
 * Most tests share a small in-memory room directory between the nodes (the interface of cluster/directory.ts), so a
 * node loss is declared by the test at once; the last one runs the whole stack as main.ts wires it (REDIS_URL, the
 * real RoomDirectory with its leases).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterDirectory, RoomLocation } from '../../signaling/src/cluster/link.ts';
import { NodeLink } from '../../signaling/src/cluster/link.ts';
import { roomKey } from '../../signaling/src/cluster/directory.ts';
import { Logger } from '../../sfu/src/Logger.ts';
import { startRedis, type TestRedis } from '../infra/redis.ts';
import {
  clientRtpCapabilities,
  code,
  connect,
  joinWithTransports,
  newRoomId,
  newToken,
  next,
  ok,
  opusRtpParameters,
  recorder,
  request,
  startTestServer,
  waitFor,
  type TestServer,
  type TestSocket,
} from './helpers.ts';

/** The room directory of cluster/directory.ts, in memory, shared by the nodes of one test world. */
class World {
  readonly rooms = new Map<string, { home: string; tokenHash: Buffer | undefined }>();
  readonly alive = new Set<string>();
  /** A stale answer the next locate of a room gets once (what a read racing a move sees). */
  readonly staleOnce = new Map<string, string>();
  readonly #lost = new Set<(node: string) => void>();
  directory(nodeId: string): ClusterDirectory {
    this.alive.add(nodeId);
    return {
      nodeId,
      locate: async (roomId): Promise<RoomLocation> => {
        const stale = this.staleOnce.get(roomId);
        this.staleOnce.delete(roomId);
        if (stale !== undefined) return { home: stale, tokenHash: undefined };
        const entry = this.rooms.get(roomId);
        if (entry && this.alive.has(entry.home)) return { ...entry };
        const claimed = { home: nodeId, tokenHash: entry?.tokenHash };
        this.rooms.set(roomId, claimed);
        return { ...claimed };
      },
      hosted: async (roomId, tokenHash) => void this.rooms.set(roomId, { home: nodeId, tokenHash: Buffer.from(tokenHash) }),
      // As the real directory does: the home goes, the token hash stays (its grace period is not modelled).
      released: async (roomId) => {
        const entry = this.rooms.get(roomId);
        if (entry?.home === nodeId) this.rooms.set(roomId, { home: '', tokenHash: entry.tokenHash });
      },
      onNodeLost: (fn) => {
        this.#lost.add(fn);
        return () => void this.#lost.delete(fn);
      },
    };
  }
  /** What a lease expiry does: the node counts as dead and every node is told. */
  lose(nodeId: string): void {
    this.alive.delete(nodeId);
    for (const fn of this.#lost) fn(nodeId);
  }
}

interface Node {
  id: string;
  server: TestServer;
  redis: Redis;
}

let redis: TestRedis;
const clients: Redis[] = [];
const sockets: TestSocket[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  for (const c of clients) c.disconnect();
  await redis?.stop();
});

const redisClient = (url = redis.url): Redis => {
  const c = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  c.on('error', () => {});
  clients.push(c);
  return c;
};

async function startNode(world: World, id: string, opts: { requestTimeoutMs?: number; url?: string } = {}): Promise<Node> {
  const { url, ...cluster } = opts;
  const client = redisClient(url);
  const server = await startTestServer(
    {},
    { signaling: { cluster: { directory: world.directory(id), redis: client, ...cluster } } },
  );
  return { id, server, redis: client };
}

async function track(url: string): Promise<TestSocket> {
  const s = await connect(url);
  sockets.push(s);
  return s;
}

/** A new room homed on `home`, with member `a` connected there and member `b` through `edge`. */
async function roomAcross(home: Node, edge: Node) {
  const roomId = newRoomId();
  const token = newToken();
  const a = await track(home.server.url);
  const { peerId: aPeerId } = await ok(a, 'join', { roomId, accessToken: token });
  const b = await track(edge.server.url);
  const { peerId: bPeerId } = await ok(b, 'join', { roomId, accessToken: token });
  return { roomId, token, a, b, aPeerId, bPeerId };
}

describe('two nodes, one room', () => {
  let world: World;
  let n1: Node;
  let n2: Node;
  beforeAll(async () => {
    world = new World();
    [n1, n2] = await Promise.all([startNode(world, 'n1'), startNode(world, 'n2')]);
  });
  afterAll(async () => {
    await Promise.all([n1?.server.close(), n2?.server.close()]);
  });

  it('members on different nodes are one room: peers, relay both ways and to one, media on the home; a wrong token via the edge is UNAUTHORIZED', async () => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await joinWithTransports(n1.server.url, roomId, token);
    sockets.push(a.socket);
    expect(world.rooms.get(roomId)?.home).toBe('n1');
    const joinedA = next(a.socket, 'peerJoined');
    const b = await joinWithTransports(n2.server.url, roomId, token);
    sockets.push(b.socket);
    // B's member runs on n1: the room is n1's only, and its transports are n1's.
    expect(n2.server.sfu.stats().rooms).toBe(0);
    expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(2);
    expect(b.join.peers).toEqual([{ peerId: a.peerId }]);
    expect(await joinedA).toEqual({ peerId: b.peerId });

    const toB = next(b.socket, 'relay');
    await ok(a.socket, 'relay', { blob: 'from-a' });
    expect(await toB).toEqual({ from: a.peerId, blob: 'from-a' });
    const toA = next(a.socket, 'relay');
    await ok(b.socket, 'relay', { to: a.peerId, blob: 'from-b' });
    expect(await toA).toEqual({ from: b.peerId, blob: 'from-b' });

    const newProducer = next(a.socket, 'newProducer');
    const { producerId } = await ok(b.socket, 'produce', {
      transportId: b.sendTransportId,
      kind: 'audio',
      rtpParameters: opusRtpParameters(),
      source: 'mic',
    });
    expect(await newProducer).toMatchObject({ peerId: b.peerId, producerId, kind: 'audio' });
    const consumer = await ok(a.socket, 'consume', { transportId: a.recvTransportId, producerId, rtpCapabilities: clientRtpCapabilities() });
    expect(consumer.producerId).toBe(producerId);
    expect(n1.server.sfu.stats()).toMatchObject({ producers: 1, consumers: 1, transports: 4 });
    const consumerClosed = next(a.socket, 'consumerClosed');
    await ok(b.socket, 'closeProducer', { producerId });
    expect(await consumerClosed).toEqual({ consumerId: consumer.consumerId });

    const intruder = await track(n2.server.url);
    const refused = await request(intruder, 'join', { roomId, accessToken: newToken() });
    expect(code(refused)).toBe('UNAUTHORIZED');
    expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(2);
    expect(intruder.connected).toBe(true);
  });

  it('everything the home sends a member arrives in order: each relay to itself comes before its ack', async () => {
    const { b, bPeerId: peerId } = await roomAcross(n1, n2);
    const seen: string[] = [];
    b.on('relay', ({ blob }) => seen.push(`event ${blob}`));
    const acks = Array.from({ length: 50 }, (_, i) =>
      request(b, 'relay', { to: peerId, blob: `m${i}` }).then((res) => {
        expect(res.ok).toBe(true);
        seen.push(`ack m${i}`);
      }),
    );
    await Promise.all(acks);
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => [`event m${i}`, `ack m${i}`]).flat());
  });

  it("a member's socket closing on the edge frees its peer on the home", async () => {
    const { roomId, a, b, bPeerId: peerId } = await roomAcross(n1, n2);
    const left = next(a, 'peerLeft');
    b.disconnect();
    expect(await left).toEqual({ peerId });
    expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    // The room closing empty on its home releases its directory entry.
    await ok(a, 'leave', {});
    expect(n1.server.sfu.getRoom(roomId)).toBeUndefined();
    await waitFor(() => world.rooms.get(roomId)?.home === '', 5000, 'room released');
  });

  it('a join forwarded to a node that is no longer home is UNAVAILABLE there, and the edge locates the room once more', async () => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await track(n2.server.url);
    await ok(a, 'join', { roomId, accessToken: token });
    expect(world.rooms.get(roomId)?.home).toBe('n2');
    // The edge (n2) reads a stale "n1"; n1 has no such room and the directory names n2: n1 refuses, n2 serves it.
    world.staleOnce.set(roomId, 'n1');
    const b = await track(n2.server.url);
    const joined = await ok(b, 'join', { roomId, accessToken: token });
    expect(joined.peers).toHaveLength(1);
    expect(n2.server.sfu.getRoom(roomId)?.peerCount).toBe(2);
    expect(n1.server.sfu.getRoom(roomId)).toBeUndefined();
  });

  it('a draining home refuses joins forwarded to it (DRAINING); the edge itself still forwards', async () => {
    const roomId = newRoomId();
    const token = newToken();
    const a = await track(n1.server.url);
    await ok(a, 'join', { roomId, accessToken: token });
    void n1.server.drain(60_000);
    const b = await track(n2.server.url);
    expect(code(await request(b, 'join', { roomId, accessToken: token }))).toBe('DRAINING');
    expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(1);
  });
});

describe('node link', () => {
  it('a home that emits 50 events then replies: the edge sees all 50 before the reply', async () => {
    const logger = new Logger('error');
    const seen: string[] = [];
    let home: NodeLink | undefined;
    const noop = { left: () => {}, gone: () => {} };
    home = new NodeLink({
      redis: redisClient(),
      nodeId: 'home-x',
      logger,
      receiver: {
        ...noop,
        events: () => {},
        request: async (from, socket, event, payload) => {
          for (let i = 0; i < 50; i++) home!.emit(from, [socket], 'relay', { i });
          return { ok: true, data: { event, payload } };
        },
      },
    });
    const edge = new NodeLink({
      redis: redisClient(),
      nodeId: 'edge-x',
      logger,
      receiver: { ...noop, events: (ids, event, payload) => seen.push(`${ids.join()} ${event} ${String(payload['i'])}`), request: async () => ({ ok: true, data: {} }) },
    });
    await Promise.all([home.ready, edge.ready]);
    const res = await edge.request('home-x', 'sock1', 'leave', {});
    expect(res).toEqual({ ok: true, data: { event: 'leave', payload: {} } });
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => `sock1 relay ${i}`));
    // Each stream expires some time after its last message (a node gone for good leaves nothing behind).
    const ttl = await redisClient().pttl('sm:link:edge-x');
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    home.close();
    edge.close();
  });

  it('an unanswered request is UNAVAILABLE after the timeout, and at once when its node is declared lost', async () => {
    const receiver = { events: () => {}, left: () => {}, gone: () => {}, request: async () => ({ ok: true as const, data: {} }) };
    const edge = new NodeLink({ redis: redisClient(), nodeId: 'edge-y', logger: new Logger('error'), receiver, timeoutMs: 300 });
    await edge.ready;
    const started = Date.now();
    expect(code(await edge.request('nobody', 's', 'leave', {}))).toBe('UNAVAILABLE');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const pending = edge.request('nobody', 's', 'leave', {});
    edge.failPending('nobody');
    expect(code(await pending)).toBe('UNAVAILABLE');
    edge.close();
  });
});

describe('Redis restarted empty', () => {
  it('the node link reads on: relays and replies between the nodes flow again', async () => {
    const own = await startRedis();
    const world = new World();
    const [n1, n2] = await Promise.all([startNode(world, 'r1', { url: own.url }), startNode(world, 'r2', { url: own.url })]);
    try {
      const { a, b, aPeerId } = await roomAcross(n1, n2);
      await own.restart();
      await waitFor(() => n1.redis.status === 'ready' && n2.redis.status === 'ready', 10_000, 'clients reconnected');
      const got = next(a, 'relay', 15_000);
      await ok(b, 'relay', { to: aPeerId, blob: 'after-restart' });
      expect((await got).blob).toBe('after-restart');
      const toB = next(b, 'relay', 15_000);
      await ok(a, 'relay', { blob: 'back' });
      expect((await toB).blob).toBe('back');
    } finally {
      await Promise.all([n1.server.close(), n2.server.close()]);
      await own.stop();
    }
  }, 40_000);
});

describe('a forwarded request that times out', () => {
  it('is UNAVAILABLE at the edge, and a join that still ran on the home leaves no member behind', async () => {
    const world = new World();
    const [n1, n2] = await Promise.all([startNode(world, 't1'), startNode(world, 't2', { requestTimeoutMs: 1 })]);
    try {
      const roomId = newRoomId();
      const token = newToken();
      const a = await track(n1.server.url);
      await ok(a, 'join', { roomId, accessToken: token });
      const b = await track(n2.server.url);
      const seen = recorder(a);
      expect(code(await request(b, 'join', { roomId, accessToken: token }))).toBe('UNAVAILABLE');
      // The home still ran each join sent to it (the first and the edge's one relocation), and the edge's `gone` after
      // each timeout took that member away again.
      const peerEvents = (): string[] => seen.events.map((e) => e.event).filter((e) => e.startsWith('peer'));
      await waitFor(() => peerEvents().length >= 4, 5000, 'both joins undone');
      expect(peerEvents()).toEqual(['peerJoined', 'peerLeft', 'peerJoined', 'peerLeft']);
      expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(1);
      expect(code(await request(b, 'createTransport', { direction: 'send' }))).toBe('UNAVAILABLE');
    } finally {
      await Promise.all([n1.server.close(), n2.server.close()]);
    }
  });
});

/** A fresh world of nodes `<p>1` and `<p>2`, and a room homed on the first with member `a` there and `b` on the second. */
async function withRoomOnTwoNodes(
  p: string,
  fn: (t: { world: World; n1: Node; n2: Node } & Awaited<ReturnType<typeof roomAcross>>) => Promise<void>,
): Promise<void> {
  const world = new World();
  const [n1, n2] = await Promise.all([startNode(world, `${p}1`), startNode(world, `${p}2`)]);
  try {
    await fn({ world, n1, n2, ...(await roomAcross(n1, n2)) });
  } finally {
    await Promise.all([n1.server.close(), n2.server.close()]);
  }
}

describe('node lost', () => {
  it('an edge node lost: the home drops its members (the others see peerLeft)', () =>
    withRoomOnTwoNodes('e', async ({ world, n1, roomId, a, bPeerId }) => {
      const left = next(a, 'peerLeft');
      world.lose('e2');
      expect(await left).toEqual({ peerId: bPeerId });
      expect(n1.server.sfu.getRoom(roomId)?.peerCount).toBe(1);
    }));

  it("the edge's members get rejoin (node-lost), and their rejoin makes the edge the home with the same token hash", () =>
    withRoomOnTwoNodes('h', async ({ world, n1, n2, roomId, token, b }) => {
      const tokenHash = n1.server.sfu.getRoom(roomId)!.tokenHash;
      const c = await track(n2.server.url);
      await ok(c, 'join', { roomId, accessToken: token });

      const rejoinB = next(b, 'rejoin');
      const rejoinC = next(c, 'rejoin');
      await n1.server.close();
      world.lose('h1');
      expect(await rejoinB).toEqual({ reason: 'node-lost' });
      expect(await rejoinC).toEqual({ reason: 'node-lost' });
      // Until it joins again, a request is UNAVAILABLE (the client rejoins on that too).
      expect(code(await request(b, 'createTransport', { direction: 'send' }))).toBe('UNAVAILABLE');

      // The first join after the loss re-creates the room on h2 with the directory's token hash: a wrong token is refused
      // (and leaves no room behind), the right one gets in.
      const intruder = await track(n2.server.url);
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
      expect(n2.server.sfu.getRoom(roomId)).toBeUndefined();
      const again = await ok(b, 'join', { roomId, accessToken: token });
      expect(world.rooms.get(roomId)?.home).toBe('h2');
      const room = n2.server.sfu.getRoom(roomId)!;
      expect(room.tokenHash.equals(tokenHash)).toBe(true);
      expect(again.peers).toEqual([]);
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
      const peerJoined = next(b, 'peerJoined');
      const cAgain = await ok(c, 'join', { roomId, accessToken: token });
      expect(await peerJoined).toEqual({ peerId: cAgain.peerId });
      expect(room.peerCount).toBe(2);
    }));
});

describe('the whole stack (REDIS_URL, the real RoomDirectory)', () => {
  it('one room through two nodes; the home closing moves its members to the other node with the same token', async () => {
    const start = (nodeId: string): Promise<TestServer> => startTestServer({ redisUrl: redis.url, nodeId, clusterLease: 2 });
    const [n1, n2] = await Promise.all([start('real-1'), start('real-2')]);
    try {
      const roomId = newRoomId();
      const token = newToken();
      const a = await track(n1.url);
      const joinedA = await ok(a, 'join', { roomId, accessToken: token });
      const tokenHash = n1.sfu.getRoom(roomId)!.tokenHash;
      const b = await track(n2.url);
      const peerJoined = next(a, 'peerJoined');
      const joinedB = await ok(b, 'join', { roomId, accessToken: token });
      expect(joinedB.peers).toEqual([{ peerId: joinedA.peerId }]);
      expect(await peerJoined).toEqual({ peerId: joinedB.peerId });
      expect(n2.sfu.stats().rooms).toBe(0);
      const relayed = next(a, 'relay');
      await ok(b, 'relay', { blob: 'hello' });
      expect(await relayed).toEqual({ from: joinedB.peerId, blob: 'hello' });
      const intruder = await track(n2.url);
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');

      // The home closes (its lease goes with it): b is told to rejoin, and its rejoin makes n2 the home.
      const rejoin = next(b, 'rejoin', 15_000);
      await n1.close();
      expect(await rejoin).toEqual({ reason: 'node-lost' });
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
      expect(n2.sfu.getRoom(roomId)).toBeUndefined();
      await ok(b, 'join', { roomId, accessToken: token });
      expect(n2.sfu.getRoom(roomId)!.tokenHash.equals(tokenHash)).toBe(true);
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
    } finally {
      await Promise.all([n1.close(), n2.close()]);
    }
  }, 30_000);
  it('a room lost with its worker is released (nobody renews a room that is gone) and keeps its token hash for the rejoin', async () => {
    const server = await startTestServer({ redisUrl: redis.url, nodeId: 'real-w', clusterLease: 2 });
    const data = redisClient();
    try {
      const roomId = newRoomId();
      const token = newToken();
      const a = await track(server.url);
      await ok(a, 'join', { roomId, accessToken: token });
      const room = server.sfu.getRoom(roomId)!;
      const key = roomKey(roomId);
      await waitFor(async () => (await data.hget(key, 'home')) === 'real-w', 5000, 'room hosted');
      expect(await data.hget(key, 'tok')).toBe(room.tokenHash.toString('hex'));
      const rejoin = next(a, 'rejoin', 15_000);
      process.kill(room.workerPid, 'SIGKILL');
      expect(await rejoin).toEqual({ reason: 'worker-died' });
      // Released: the entry has no home any more, but the token hash stays for the grace period.
      await waitFor(async () => (await data.hget(key, 'home')) === null, 5000, 'home released');
      expect(await data.hget(key, 'tok')).toBe(room.tokenHash.toString('hex'));
      await waitFor(() => server.sfu.pool.size === 1, 10_000, 'replacement worker');
      const intruder = await track(server.url);
      expect(code(await request(intruder, 'join', { roomId, accessToken: newToken() }))).toBe('UNAUTHORIZED');
      await ok(a, 'join', { roomId, accessToken: token });
      await waitFor(async () => (await data.hget(key, 'home')) === 'real-w', 5000, 'hosted again');
    } finally {
      await server.close();
    }
  }, 30_000);
});
