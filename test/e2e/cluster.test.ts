/**
 * Cluster mode end to end: redis-server, three nodes as real CLI processes (REDIS_URL, NODE_ID, own ports each) and
 * Debian's nginx as the one name in front (test/infra/cluster.ts: round-robin, WebSocket proxying, and a test-only
 * cookie that pins a browser to a node while it is up). Chromium participants, all through nginx:
 *
 * 1. Alice on node a creates the meeting (a is its home), Bob on node b joins: one encrypted call across two nodes.
 * 2. SIGKILL node a (the home and Alice's node): Alice's socket moves to another node, the room is re-created on a
 *    live node (token hash kept), both rejoin by themselves within seconds and the call is whole again with fresh keys.
 * 3. SIGKILL redis-server mid-call and start an empty one: the call keeps decoding frames throughout (no rejoin, no
 *    drop), and afterwards Carol joins through node c.
 * No node's log names the room or a member (nor does the balancer's access log name the room).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClientBuild } from '../client-build.ts';
import { startBalancer, startNode, type Balancer, type NodeProcess } from '../infra/cluster.ts';
import { freePort } from '../infra/coturn.ts';
import { startRedis, type TestRedis } from '../infra/redis.ts';
import { createAndJoin, exportKeys, joinHooked } from './e2ee-helpers.ts';
import { consumerProgress, ensureChromium, expectMediaFlowing, launchChromium, roomIdOf, snapshot, waitUntil, type Participant } from './harness.ts';

const IDS = ['a', 'b', 'c'] as const;

/** Sum of a member's drop counters (decrypt failures and the like), over every member `p` receives. */
async function drops(p: Participant): Promise<number> {
  const s = await snapshot(p);
  return s.e2ee.members.reduce((n, m) => n + Object.values(m.drops).reduce((a, b) => a + b, 0), 0);
}

/** Every consumer of `p` decodes (video frames / audio packets advance) within `ms`. */
async function decodingEverything(p: Participant, ms = 1200): Promise<string | null> {
  const snap = await snapshot(p);
  const progress = await consumerProgress(p, ms);
  if (snap.consumers.length === 0) return `${p.name}: no consumers`;
  for (const c of snap.consumers) {
    const pr = progress.get(c.id);
    if (!pr) return `${p.name}: no stats for ${c.kind} of ${c.peerId}`;
    const moved = c.kind === 'video' ? pr.after.framesDecoded > pr.before.framesDecoded : pr.after.packetsReceived > pr.before.packetsReceived;
    if (!moved) return `${p.name}: ${c.kind} of ${c.peerId} stalled`;
  }
  return null;
}

describe('a cluster of three nodes behind nginx, coordinated through Redis', () => {
  let redis: TestRedis;
  const nodes = new Map<string, NodeProcess>();
  let lb: Balancer;
  const people: Participant[] = [];

  beforeAll(async () => {
    ensureChromium();
    const clientDir = process.env['E2E_CLIENT_DIR'] || ensureClientBuild('test');
    redis = await startRedis();
    const ports = [await freePort(), await freePort(), await freePort()];
    const started = await Promise.all(IDS.map((id, i) => startNode({ nodeId: `node-${id}`, port: ports[i]!, redisUrl: redis.url, clientDir })));
    for (const [i, id] of IDS.entries()) nodes.set(id, started[i]!);
    lb = await startBalancer(IDS.map((id, i) => ({ id, port: ports[i]! })));
  });
  afterAll(async () => {
    await Promise.all(people.map((p) => p.close()));
    await lb?.stop();
    await Promise.all([...nodes.values()].map((n) => n.kill()));
    await redis?.stop();
  });

  /** A browser pinned to node `id` (while it is up) through the balancer's test cookie. */
  const person = async (name: string, id: (typeof IDS)[number]): Promise<Participant> => {
    const p = await launchChromium(name);
    people.push(p);
    await p.context.addCookies([{ name: 'sm_node', value: id, url: lb.url }]);
    return p;
  };

  it('one encrypted call over two nodes; the home node SIGKILLed: members rejoin through the others; Redis restarted mid-call: nothing lost', async () => {
    const dump = (): string =>
      [
        ...people.map((p) => `--- ${p.name} console ---\n${p.logs.slice(-30).join('\n')}`),
        ...[...nodes.values()].map((n) => `--- ${n.nodeId} ---\n${n.output.slice(-30).join('\n')}`),
        `--- nginx ---\n${lb.accessLog().slice(-30).join('\n')}`,
      ].join('\n');
    try {
      for (const n of nodes.values()) expect(n.output.some((l) => l.includes(`cluster mode on: node ${n.nodeId}`))).toBe(true);

      // 1. Alice through node a (the room's home: her node claims it), Bob through node b.
      const [alice, bob] = [await person('Alice', 'a'), await person('Bob', 'b')];
      const link = await createAndJoin(alice, lb.url, 'script');
      expect(link.startsWith(`${lb.url}/m/`)).toBe(true);
      const roomId = roomIdOf(link);
      await joinHooked(bob, link, 'script');
      const [a1, b1] = [await snapshot(alice), await snapshot(bob)];
      await expectMediaFlowing(alice, [b1.peerId!], 60_000);
      await expectMediaFlowing(bob, [a1.peerId!], 60_000);
      const keys1 = await Promise.all([exportKeys(alice), exportKeys(bob)]);
      const created = (id: string): number => nodes.get(id)!.output.filter((l) => l.includes('"msg":"room created"')).length;
      expect([created('a'), created('b'), created('c')]).toEqual([1, 0, 0]);

      // 2. Node a dies with the room's media and Alice's socket.
      await nodes.get('a')!.kill();
      const killedAt = Date.now();
      await waitUntil(
        async () => {
          const [a, b] = [await snapshot(alice), await snapshot(bob)];
          return a.status === 'joined' && b.status === 'joined' && a.joinCount >= 2 && b.joinCount >= 2 && a.peers.includes(b.peerId!) && b.peers.includes(a.peerId!);
        },
        30_000,
        'Alice and Bob together again after node a died',
      );
      const rejoinedMs = Date.now() - killedAt;
      const [a2, b2] = [await snapshot(alice), await snapshot(bob)];
      expect(a2.peerId).not.toBe(a1.peerId);
      expect(b2.peerId).not.toBe(b1.peerId);
      await expectMediaFlowing(alice, [b2.peerId!], 45_000);
      await expectMediaFlowing(bob, [a2.peerId!], 45_000);
      // Re-created on one live node only (it may close empty and be made again there while the members come back);
      // Alice's socket went through another node (nginx logged her closed one).
      const hosts = (): string[] => ['b', 'c'].filter((id) => created(id) > 0);
      expect(hosts()).toHaveLength(1);
      const aPort = nodes.get('a')!.port;
      expect(lb.accessLog().some((l) => l.startsWith(`a 127.0.0.1:${aPort} 101 /socket.io/`))).toBe(true);
      const keys2 = await Promise.all([exportKeys(alice), exportKeys(bob)]);
      for (const [i, after] of keys2.entries()) {
        expect(after.send).not.toBeNull();
        expect(keys1[i]!.sendHistory.map((k) => k.key)).not.toContain(after.send!.key);
      }
      expect(keys2[0]!.receive.some((r) => r.peerId === b2.peerId)).toBe(true);
      expect(keys2[1]!.receive.some((r) => r.peerId === a2.peerId)).toBe(true);

      // 3. Redis dies mid-call and comes back empty: every consumer keeps decoding, nobody rejoins, nothing dropped.
      const dropsBefore = [await drops(alice), await drops(bob)];
      await redis.kill();
      const outageUntil = Date.now() + 3000;
      while (Date.now() < outageUntil) {
        for (const p of [alice, bob]) expect(await decodingEverything(p, 800)).toBeNull();
      }
      await redis.restart();
      for (let i = 0; i < 3; i++) for (const p of [alice, bob]) expect(await decodingEverything(p, 800)).toBeNull();
      const [a3, b3] = [await snapshot(alice), await snapshot(bob)];
      expect([a3.peerId, a3.joinCount, b3.peerId, b3.joinCount]).toEqual([a2.peerId, a2.joinCount, b2.peerId, b2.joinCount]);
      expect([await drops(alice), await drops(bob)]).toEqual(dropsBefore);

      // A new member after the restart, through node c: everyone in one call.
      const carol = await person('Carol', 'c');
      await joinHooked(carol, link, 'script');
      const c1 = await snapshot(carol);
      await waitUntil(async () => (await snapshot(carol)).peers.length === 2, 30_000, 'Carol sees both');
      await expectMediaFlowing(carol, [a2.peerId!, b2.peerId!], 45_000);
      await expectMediaFlowing(alice, [b2.peerId!, c1.peerId!], 45_000);
      await expectMediaFlowing(bob, [a2.peerId!, c1.peerId!], 45_000);
      expect(hosts()).toHaveLength(1);

      // No node's log names the room or a member.
      const ids = [roomId, a1.peerId!, b1.peerId!, a2.peerId!, b2.peerId!, c1.peerId!];
      for (const n of nodes.values()) for (const id of ids) expect(n.output.join('\n'), `${n.nodeId} log`).not.toContain(id);
      expect(lb.accessLog().join('\n')).not.toContain(roomId);
      console.info(`[cluster] rejoined ${rejoinedMs} ms after node a was killed`);
    } catch (err) {
      console.error(dump());
      throw err;
    }
  }, 180_000);
});
