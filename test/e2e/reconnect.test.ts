/**
 * Recovery without user action: SIGKILL of the room's mediasoup worker mid-call (server sends `rejoin`),
 * and a dropped signaling connection (socket.io reconnect). After each, frames advance again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, createMeeting, dumpLogs, expectMediaFlowing, joinByLink, joinFromLobby, roomIdOf, snapshot, waitUntil, type Participant } from './harness.ts';

describe('automatic recovery', () => {
  let h: Harness;
  let alice: Participant;
  let bob: Participant;
  let roomId: string;

  beforeAll(async () => {
    h = await Harness.start();
    alice = await h.participant('Alice');
    bob = await h.participant('Bob');
    const link = await createMeeting(alice, h.url);
    roomId = roomIdOf(link);
    await alice.page.getByTestId('join-created').click();
    await joinFromLobby(alice);
    await joinByLink(bob, link);
  });
  afterAll(async () => {
    await h?.close();
  });

  async function expectCallWorks(minJoins: number): Promise<void> {
    await waitUntil(
      async () => {
        const [a, b] = await Promise.all([snapshot(alice), snapshot(bob)]);
        return a.status === 'joined' && b.status === 'joined' && a.joinCount >= minJoins && b.joinCount >= minJoins && a.peers.includes(b.peerId!) && b.peers.includes(a.peerId!);
      },
      45_000,
      `both rejoined (join #${minJoins})`,
    );
    const [a, b] = await Promise.all([snapshot(alice), snapshot(bob)]);
    await expectMediaFlowing(alice, [b.peerId!], 45_000);
    await expectMediaFlowing(bob, [a.peerId!], 45_000);
  }

  it('a two-way call is up', async () => {
    await expectCallWorks(1);
  }, 180_000);

  it('SIGKILL of the room’s mediasoup worker: everyone rejoins by themselves and media flows again', async () => {
    try {
      const pid = h.roomWorkerPid(roomId);
      const before = await Promise.all([snapshot(alice), snapshot(bob)]);
      process.kill(pid, 'SIGKILL');
      await expectCallWorks(2);
      const after = await Promise.all([snapshot(alice), snapshot(bob)]);
      expect(h.roomWorkerPid(roomId)).not.toBe(pid);
      // Fresh peers and media objects, same local tracks re-produced.
      expect(after[0].peerId).not.toBe(before[0].peerId);
      expect(after[0].producers.map((p) => p.source).sort()).toEqual(['camera', 'mic']);
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 240_000);

  it('the signaling connection drops: the socket reconnects and the call resumes', async () => {
    try {
      const before = await snapshot(alice);
      h.server.io.disconnectSockets(true);
      await expectCallWorks(before.joinCount + 1);
    } catch (err) {
      console.error(dumpLogs(h));
      throw err;
    }
  }, 240_000);
});
